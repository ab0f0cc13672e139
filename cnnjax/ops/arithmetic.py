"""Convolution arithmetic: output sizes, parameter counts, FLOPs and receptive fields.

Plain Python integers (no JAX), so model summaries can call these at import or config time.

Seeds: 000 (output size ``floor((H_in - M + 2P) / S) + 1``), 004 (parameter counts: dense ``(n + 1) m``,
k-local ``(k + 1) m`` in 1-D and ``(k^2 + 1) m^2`` in 2-D, conv ``(M p q + 1) K``, grouped conv divided by
``g``), 001/004 (receptive fields: two 3x3 convs see 5x5, dilation ``d`` turns a ``k`` kernel into
``d (k - 1) + 1``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "ReceptiveField",
    "conv_flops",
    "conv_params",
    "conv_transpose_output_size",
    "dense_flops",
    "dense_params",
    "depthwise_params",
    "effective_kernel_size",
    "k_local_params",
    "locally_connected_flops",
    "locally_connected_params",
    "output_size",
    "receptive_field",
    "separable_flops",
    "separable_params",
]


def _int(value, name: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be an int")
    if value < minimum:
        raise ValueError(f"{name}={value!r} must be >= {minimum}")
    return value


def _ints(value, name: str, minimum: int) -> tuple[int, ...]:
    """An int or a non-empty sequence of ints, each >= ``minimum``, as a tuple."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (_int(value, name, minimum),)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0:
        return tuple(_int(v, name, minimum) for v in value)
    raise TypeError(f"{name}={value!r} must be an int or a non-empty sequence of ints")


def _per_axis(values: dict[str, object], ndim: int) -> list[tuple[int, ...]]:
    """Per-axis tuples of the same length; plain ints are broadcast to ``ndim`` axes."""
    _int(ndim, "ndim", 1)
    tuples = {name: _ints(v, name, 1) for name, v in values.items()}
    lengths = {len(t) for name, t in tuples.items() if not isinstance(values[name], int)}
    if len(lengths) > 1:
        detail = ", ".join(f"{k}={v!r}" for k, v in values.items())
        raise ValueError(f"per-axis arguments have different lengths: {detail}")
    nd = lengths.pop() if lengths else ndim
    return [t * nd if isinstance(values[name], int) else t for name, t in tuples.items()]


def effective_kernel_size(kernel_size: int, dilation: int = 1) -> int:
    """Extent of a dilated kernel: ``D (M - 1) + 1`` (seed 001: 3x3 dilated 1, 2, 4 spans 3, 5, 9)."""
    return _int(dilation, "dilation", 1) * (_int(kernel_size, "kernel_size", 1) - 1) + 1


def _padding_pair(padding, kernel_size: int, dilation: int) -> tuple[int, int]:
    eff = dilation * (kernel_size - 1)
    if isinstance(padding, str):
        name = padding.upper()
        if name == "VALID":
            return 0, 0
        if name == "SAME":
            return eff // 2, eff - eff // 2
        if name == "FULL":
            return eff, eff
        raise ValueError(f"padding={padding!r} is unknown; allowed: VALID, SAME, FULL, an int or a (lo, hi) pair")
    if isinstance(padding, int) and not isinstance(padding, bool):
        lo = hi = _int(padding, "padding", 0)
        return lo, hi
    if isinstance(padding, Sequence) and len(padding) == 2:
        return _int(padding[0], "padding[0]", 0), _int(padding[1], "padding[1]", 0)
    raise ValueError(f"padding={padding!r} is malformed: use VALID, SAME, FULL, an int or a (lo, hi) pair")


def output_size(in_size: int, kernel_size: int, stride: int = 1, padding=0, dilation: int = 1) -> int:
    """Output length of a convolution / pooling along one axis (seed 000).

    ``H_out = floor((H_in + P_lo + P_hi - D (M - 1) - 1) / S) + 1``; with a symmetric integer padding ``P``
    and ``D = 1`` this is the lectures' ``floor((H_in - M + 2P) / S) + 1``.

    Args:
      in_size: ``H_in >= 1``.
      kernel_size: ``M >= 1``.
      stride: ``S >= 1``.
      padding: an int ``P`` (both sides), a ``(lo, hi)`` pair, or "VALID" / "SAME" / "FULL"
        (the same rule as :func:`cnnjax.ops.conv`).
      dilation: ``D >= 1``.

    Raises:
      ValueError: if the (dilated) kernel is larger than the padded input.
    """
    in_size = _int(in_size, "in_size", 1)
    kernel_size = _int(kernel_size, "kernel_size", 1)
    stride = _int(stride, "stride", 1)
    dilation = _int(dilation, "dilation", 1)
    lo, hi = _padding_pair(padding, kernel_size, dilation)
    span = in_size + lo + hi - effective_kernel_size(kernel_size, dilation)
    if span < 0:
        raise ValueError(
            f"kernel_size={kernel_size} (dilation {dilation}) is larger than the padded input {in_size} + {lo} + {hi}"
        )
    return span // stride + 1


def conv_transpose_output_size(
    in_size: int, kernel_size: int, stride: int = 1, padding: int = 0, output_padding: int = 0, dilation: int = 1
) -> int:
    """Output length of :func:`cnnjax.ops.conv_transpose` (PyTorch ConvTranspose convention, seed 004).

    ``H_out = (H_in - 1) S - 2P + D (M - 1) + output_padding + 1``.
    """
    in_size = _int(in_size, "in_size", 1)
    stride = _int(stride, "stride", 1)
    padding = _int(padding, "padding", 0)
    output_padding = _int(output_padding, "output_padding", 0)
    size = (in_size - 1) * stride - 2 * padding + effective_kernel_size(kernel_size, dilation) + output_padding
    if size < 1:
        raise ValueError(f"conv_transpose output size {size} < 1 (in_size={in_size}, padding={padding})")
    return size


# ---------------------------------------------------------------------------------------------- parameters


def dense_params(n_in: int, n_out: int, use_bias: bool = True) -> int:
    """Fully connected layer, ``n`` inputs to ``m`` outputs: ``(n + 1) m`` (seed 004)."""
    n_in, n_out = _int(n_in, "n_in", 1), _int(n_out, "n_out", 1)
    return (n_in + int(use_bias)) * n_out


def k_local_params(k: int, m: int, ndim: int = 1, use_bias: bool = True) -> int:
    """k-local (locally connected, one map) layer: ``(k + 1) m`` in 1-D, ``(k^2 + 1) m^2`` in 2-D (seed 004).

    In general ``(k^ndim + 1) m^ndim`` for an output of ``m`` cells along each of ``ndim`` axes.
    """
    k, m, ndim = _int(k, "k", 1), _int(m, "m", 1), _int(ndim, "ndim", 1)
    return (k**ndim + int(use_bias)) * m**ndim


def conv_params(
    in_channels: int, out_channels: int, kernel_size, groups: int = 1, use_bias: bool = True, ndim: int = 2
) -> int:
    """Convolution with ``M`` input maps, ``K`` filters of size ``p x q``: ``(M p q + 1) K`` (seed 004).

    Grouped (``g`` groups): ``(M p q / g + 1) K`` — the weights are divided by ``g``, the biases are not.
    ``kernel_size`` is one int per spatial axis, or an int for a kernel of that size on ``ndim`` axes.
    """
    m = _int(in_channels, "in_channels", 1)
    k = _int(out_channels, "out_channels", 1)
    g = _int(groups, "groups", 1)
    if m % g or k % g:
        raise ValueError(f"groups={g} must divide in_channels={m} and out_channels={k}")
    (window,) = _per_axis({"kernel_size": kernel_size}, ndim)
    return (m // g * math.prod(window) + int(use_bias)) * k


def depthwise_params(
    channels: int, kernel_size, multiplier: int = 1, use_bias: bool = True, ndim: int = 2
) -> int:
    """Depthwise conv (groups = channels, seed 004): ``(p q + 1) M d`` for channel multiplier ``d``."""
    c = _int(channels, "channels", 1)
    d = _int(multiplier, "multiplier", 1)
    return conv_params(c, c * d, kernel_size, groups=c, use_bias=use_bias, ndim=ndim)


def separable_params(
    in_channels: int, out_channels: int, kernel_size, multiplier: int = 1, use_bias: bool = True, ndim: int = 2
) -> int:
    """Depthwise-separable conv (seed 004): depthwise ``p q M d`` weights, then 1x1 ``(M d + 1) K``.

    As in :func:`cnnjax.ops.separable_conv` (and Keras ``SeparableConv2D``) only the pointwise step has a
    bias: ``p q M d + (M d + 1) K``.
    """
    m = _int(in_channels, "in_channels", 1)
    k = _int(out_channels, "out_channels", 1)
    d = _int(multiplier, "multiplier", 1)
    (window,) = _per_axis({"kernel_size": kernel_size}, ndim)
    return math.prod(window) * m * d + (m * d + int(use_bias)) * k


def locally_connected_params(
    in_channels: int, out_channels: int, kernel_size, out_spatial, use_bias: bool = True, ndim: int = 2
) -> int:
    """Locally connected layer (unshared weights, seed 004): ``prod(out) (M prod(k) + 1) K``.

    With one input and one output map this is the k-local count: ``(k + 1) m`` (1-D), ``(k^2 + 1) m^2`` (2-D).
    Int ``kernel_size`` / ``out_spatial`` are broadcast to ``ndim`` axes.
    """
    m = _int(in_channels, "in_channels", 1)
    k = _int(out_channels, "out_channels", 1)
    window, out = _per_axis({"kernel_size": kernel_size, "out_spatial": out_spatial}, ndim)
    return math.prod(out) * (m * math.prod(window) + int(use_bias)) * k


# ---------------------------------------------------------------------------------------------- FLOPs


def conv_flops(
    in_channels: int,
    out_channels: int,
    kernel_size,
    out_spatial,
    groups: int = 1,
    use_bias: bool = True,
    batch: int = 1,
    ndim: int = 2,
) -> int:
    """Floating-point operations of a (grouped) convolution, counting a multiply-add as 2.

    ``FLOPs = N prod(out) K (2 M prod(k) / g + [bias])``: each of the ``N prod(out) K`` outputs takes
    ``M prod(k) / g`` multiply-adds plus one bias addition.
    """
    m = _int(in_channels, "in_channels", 1)
    k = _int(out_channels, "out_channels", 1)
    g = _int(groups, "groups", 1)
    n = _int(batch, "batch", 1)
    if m % g or k % g:
        raise ValueError(f"groups={g} must divide in_channels={m} and out_channels={k}")
    window, out = _per_axis({"kernel_size": kernel_size, "out_spatial": out_spatial}, ndim)
    return n * math.prod(out) * k * (2 * (m // g) * math.prod(window) + int(use_bias))


def separable_flops(
    in_channels: int,
    out_channels: int,
    kernel_size,
    out_spatial,
    multiplier: int = 1,
    use_bias: bool = True,
    batch: int = 1,
    ndim: int = 2,
) -> int:
    """FLOPs of a depthwise-separable conv: depthwise ``2 prod(k)`` per each of ``N prod(out) M d`` outputs,
    then pointwise ``N prod(out) K (2 M d + [bias])`` (the bias only on the pointwise step, as the op)."""
    m = _int(in_channels, "in_channels", 1)
    d = _int(multiplier, "multiplier", 1)
    depthwise = conv_flops(m, m * d, kernel_size, out_spatial, groups=m, use_bias=False, batch=batch, ndim=ndim)
    _, out = _per_axis({"kernel_size": kernel_size, "out_spatial": out_spatial}, ndim)
    pointwise = conv_flops(m * d, out_channels, 1, out, use_bias=use_bias, batch=batch, ndim=len(out))
    return depthwise + pointwise


def locally_connected_flops(
    in_channels: int, out_channels: int, kernel_size, out_spatial, use_bias: bool = True, batch: int = 1,
    ndim: int = 2,
) -> int:
    """FLOPs of a locally connected layer: the same count as the conv of that shape (only the weights differ)."""
    return conv_flops(in_channels, out_channels, kernel_size, out_spatial, use_bias=use_bias, batch=batch, ndim=ndim)


def dense_flops(n_in: int, n_out: int, use_bias: bool = True, batch: int = 1) -> int:
    """Floating-point operations of a dense layer: ``N m (2 n + [bias])``."""
    n_in, n_out = _int(n_in, "n_in", 1), _int(n_out, "n_out", 1)
    return _int(batch, "batch", 1) * n_out * (2 * n_in + int(use_bias))


# ---------------------------------------------------------------------------------------------- receptive field


class ReceptiveField(NamedTuple):
    """Receptive field after one layer, along one axis.

    ``size``: how many input cells one output cell sees; ``jump``: the distance, in input cells,
    between two neighbouring output cells (the product of the strides so far).
    """

    size: int
    jump: int


def _layer_spec(layer, index: int) -> tuple[int, int, int]:
    if isinstance(layer, int) and not isinstance(layer, bool):
        layer = (layer,)
    if isinstance(layer, dict):
        unknown = set(layer) - {"kernel", "kernel_size", "window", "stride", "dilation"}
        if unknown:
            raise ValueError(f"layers[{index}]={layer!r} has unknown keys {sorted(unknown)}")
        kernel = layer.get("kernel", layer.get("kernel_size", layer.get("window")))
        layer = (kernel, layer.get("stride", 1), layer.get("dilation", 1))
    if not isinstance(layer, Sequence) or isinstance(layer, str) or not 1 <= len(layer) <= 3:
        raise ValueError(
            f"layers[{index}]={layer!r} must be kernel, (kernel,), (kernel, stride) or (kernel, stride, dilation)"
        )
    kernel, stride, dilation = (*layer, 1, 1)[:3]
    return (
        _int(kernel, f"layers[{index}] kernel", 1),
        _int(stride, f"layers[{index}] stride", 1),
        _int(dilation, f"layers[{index}] dilation", 1),
    )


def receptive_field(layers) -> list[ReceptiveField]:
    """Receptive field (size and jump) after each layer of a stack, along one axis (seeds 001, 004).

    Recurrence, starting from ``r_0 = 1``, ``j_0 = 1`` (one input pixel):
    ``r_l = r_{l-1} + D_l (M_l - 1) j_{l-1}`` and ``j_l = j_{l-1} S_l``.
    Two stacked 3x3 convs: sizes 3, 5. Stride enlarges what the next layer sees: 3x3/2 then 3x3 gives 3, 7.
    3x3 convs dilated 1, 2, 4 stacked: 3, 7, 15.

    Args:
      layers: a sequence whose items are ``kernel``, ``(kernel,)``, ``(kernel, stride)``,
        ``(kernel, stride, dilation)`` or a dict with keys ``kernel`` (or ``window``), ``stride``, ``dilation``.
        Pooling layers are ``(window, stride)``.

    Returns:
      one :class:`ReceptiveField` ``(size, jump)`` per layer.
    """
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise TypeError(f"layers={layers!r} must be a sequence of (kernel, stride, dilation) tuples")
    size, jump = 1, 1
    result = []
    for index, layer in enumerate(layers):
        kernel, stride, dilation = _layer_spec(layer, index)
        size += (effective_kernel_size(kernel, dilation) - 1) * jump
        jump *= stride
        result.append(ReceptiveField(size, jump))
    return result
