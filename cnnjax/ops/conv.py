"""Convolution as the lectures define it: cross-correlation (no kernel flip) plus bias.

Layout conventions used by every op in :mod:`cnnjax.ops`: inputs are channels-last
``(N, *spatial, C)`` and kernels ``(*k, C_in / groups, C_out)`` (HWIO for 2-D).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from cnnjax.ops.arithmetic import output_size
from cnnjax.ops.padding import check_pad_mode, normalize_padding, pad

DIMENSION_NUMBERS = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}
_DIMENSION_NUMBERS = DIMENSION_NUMBERS  # backwards-compatible alias


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_tuple(value, n: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    """Broadcast an int or a length-``n`` sequence of ints to a tuple; each must be >= ``minimum``."""
    if _is_int(value):
        values = (int(value),) * n
    elif (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == n
        and all(_is_int(v) for v in value)
    ):
        values = tuple(int(v) for v in value)
    else:
        raise ValueError(f"{name}={value!r} must be an int or a sequence of {n} ints (one per spatial axis)")
    if any(v < minimum for v in values):
        raise ValueError(f"{name}={value!r} must be >= {minimum} in every spatial dimension")
    return values


def check_positive_int(value, name: str) -> int:
    """A Python / NumPy int >= 1."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int")
    return int(value)


def check_window_fits(spatial, window, dilations, pads, what: str = "kernel") -> None:
    """Raise if a (dilated) window is larger than the padded input on some axis."""
    for axis, (size, k, d, (lo, hi)) in enumerate(zip(spatial, window, dilations, pads)):
        if size + lo + hi < d * (k - 1) + 1:
            raise ValueError(
                f"{what} of size {k} (dilation {d}, extent {d * (k - 1) + 1}) on spatial axis {axis} is larger "
                f"than the padded input {size} + {lo} + {hi} = {size + lo + hi}"
            )


def floating_input(x, kernel):
    """Make ``x`` floating (uint8 / int images become the kernel's float type, or float32)."""
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return x
    dtype = kernel.dtype if jnp.issubdtype(kernel.dtype, jnp.inexact) else jnp.float32
    return x.astype(dtype)


def check_ranks(x, kernel, kernel_extra_axes: int = 2, layout: str = "(*k, C_in/groups, C_out)") -> int:
    """Number of spatial axes (1 to 3) implied by ``kernel``; ``x`` must be ``(N, *spatial, C)``."""
    nd = kernel.ndim - kernel_extra_axes
    if nd not in DIMENSION_NUMBERS:
        raise ValueError(
            f"kernel.shape={kernel.shape} must have {kernel_extra_axes + 1} to {kernel_extra_axes + 3} axes {layout}"
        )
    if x.ndim != nd + 2:
        raise ValueError(
            f"x.shape={x.shape} has rank {x.ndim} but kernel.shape={kernel.shape} needs rank {nd + 2} "
            f"(N, {nd} spatial axes, C)"
        )
    if 0 in kernel.shape:
        raise ValueError(f"kernel.shape={kernel.shape} must not have an empty axis {layout}")
    if 0 in x.shape[1:]:
        raise ValueError(f"x.shape={x.shape} must not have an empty spatial or channel axis")
    return nd


def check_bias(bias, c_out: int):
    """``bias`` as an array of shape ``(c_out,)``, or None; a clear error for any other shape."""
    if bias is None:
        return None
    bias = jnp.asarray(bias)
    if bias.shape != (c_out,):
        raise ValueError(f"bias.shape={bias.shape} must be (out_channels,)=({c_out},)")
    return bias


class ConvArgs(NamedTuple):
    """:func:`conv`'s arguments, checked and normalised by :func:`prepare_conv`."""

    x: Any  # floating, already padded when pad_mode is not "constant"
    kernel: Any  # in x's dtype
    bias: Any  # (C_out,) or None
    nd: int
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]  # zero padding still to apply (all (0, 0) after a non-constant pad)
    groups: int


def prepare_conv(x, kernel, bias, *, stride, padding, dilation, groups, pad_mode) -> ConvArgs:
    """Check :func:`conv`'s arguments (a clear error naming the argument, before any tracing) and
    normalise them; shared by every formulation of the convolution (``ops.im2col``)."""
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    nd = check_ranks(x, kernel)
    groups = check_positive_int(groups, "groups")
    c_in, c_out = x.shape[-1], kernel.shape[-1]
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide in_channels={c_in}")
    if c_out % groups:
        raise ValueError(f"groups={groups} must divide out_channels={c_out}")
    if kernel.shape[-2] * groups != c_in:
        raise ValueError(
            f"kernel.shape={kernel.shape} needs in_channels/groups={c_in // groups} on axis -2 "
            f"(x has {c_in} channels, groups={groups})"
        )
    strides = as_tuple(stride, nd, "stride")
    dilations = as_tuple(dilation, nd, "dilation")
    check_pad_mode(pad_mode)
    pads = normalize_padding(padding, kernel.shape[:nd], dilations)
    check_window_fits(x.shape[1:-1], kernel.shape[:nd], dilations, pads)
    bias = check_bias(bias, c_out)
    x = floating_input(x, kernel)
    if pad_mode != "constant" and any(lo or hi for lo, hi in pads):
        x = pad(x, pads, mode=pad_mode)
        pads = [(0, 0)] * nd
    kernel = kernel.astype(x.dtype) if x.dtype != kernel.dtype else kernel
    return ConvArgs(x, kernel, bias, nd, strides, dilations, tuple(tuple(p) for p in pads), groups)


def conv(
    x,
    kernel,
    bias=None,
    *,
    stride=1,
    padding="VALID",
    dilation=1,
    groups: int = 1,
    pad_mode: str = "constant",
):
    """N-d convolution (cross-correlation) with bias, for 1-D, 2-D and 3-D inputs.

    Seeds 000/001/003/004: ``Y[n, p, k] = sum_{u, m} X[n, p*S + u*D, m] F[u, m, k] + b[k]`` — for a single
    map ``(I*F)[m, n] = sum_ij w[i, j] x[m+i-1, n+j-1] + b``, for many maps
    ``Y^k_ij = sum_m sum_uv X^m_{i+u-1, j+v-1} F^{mk}_uv + b^k`` (no kernel flip). With ``groups=g``
    (seed 004, grouped convolution) the input and output channels are split in ``g`` groups and group
    ``s`` of the output only sees group ``s`` of the input. Dilation ``D`` inserts ``D - 1`` zeros between
    kernel taps (seed 001/004, atrous convolution).
    Output size per axis: ``floor((H + P_lo + P_hi - D (M - 1) - 1) / S) + 1``.

    Args:
      x: ``(N, *spatial, C_in)``, with 1 to 3 spatial axes. Integer inputs (uint8 images) are converted
        to the kernel's float type.
      kernel: ``(*k, C_in // groups, C_out)``.
      bias: optional ``(C_out,)``.
      stride, dilation: int or one int per spatial axis, >= 1.
      padding: "VALID", "SAME", "FULL", an int, or one int / (lo, hi) pair per spatial axis.
      groups: number of channel groups; must divide ``C_in`` and ``C_out``.
      pad_mode: how padded cells are filled: "constant" (zeros), "edge" (nearest pixel), "reflect"
        (mirror without repeating the edge), "wrap" (circular).

    Returns:
      ``(N, *out_spatial, C_out)`` in ``x``'s (floating) dtype.

    Raises:
      ValueError: rank mismatch, bad stride / dilation / groups / padding / pad_mode, or a kernel larger
        than the padded input — all before any tracing.
    """
    a = prepare_conv(x, kernel, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                     pad_mode=pad_mode)
    if _few_input_channels(a):
        y = _conv_few_input_channels(a.x, a.kernel, a.pads, a.dilations)
    else:
        y = _lax_conv(a.x, a.kernel, a.strides, a.pads, a.dilations, a.groups)
    if a.bias is not None:
        y = y + a.bias.astype(y.dtype)
    return y


def _lax_conv(x, kernel, strides, pads, dilations, groups=1):
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=pads,
        rhs_dilation=dilations,
        dimension_numbers=DIMENSION_NUMBERS[x.ndim - 2],
        feature_group_count=groups,
        precision=lax.Precision.HIGHEST,
    )


#: Below this many input channels (one AVX2 vector of float32) a stride-1 dense conv is a banded GEMM
#: (``_banded_gemm``) wherever that beats XLA:CPU's convolution: the forward and kernel gradient of a
#: one-channel conv (XLA's direct convolution of LeNet-5's first layer took half the train step) and the
#: input gradient (XLA's was ~3x slower on LeNet-5's second conv, 6 -> 16 channels, 5x5). See
#: ``benchmarks/run.py``.
FEW_INPUT_CHANNELS = 8
#: ... as long as the gathered rows' index (pixels of ``R``) stays small.
MAX_GATHER_INDEX = 1 << 22


class _Bands(NamedTuple):
    """Where the banded GEMM's rows come from: output columns per band ``bw``, ``bands`` of them, ``span``
    input columns under one band, ``extra`` zero columns padded on the right so the last band fits."""

    out: list[int]
    bw: int
    bands: int
    span: int
    extra: int


def _bands(padded_spatial, window, dilations) -> _Bands:
    """Band geometry along the last spatial axis. Output columns per band: the smallest divisor of the
    output width in ``[k, 2k]`` (LeNet-5's 28 -> 7), else ``min(k, width)``. Wider bands waste multiplies on the band's
    zeros (``(bw + D (k - 1)) / k`` times the direct conv's), narrower ones make more, shorter row copies."""
    out = [output_size(size, k, 1, 0, d) for size, k, d in zip(padded_spatial, window, dilations)]
    k, d = window[-1], dilations[-1]
    bw = next((bw for bw in range(k, 2 * k + 1) if out[-1] % bw == 0), min(k, out[-1]))
    bands = -(-out[-1] // bw)
    span = bw + d * (k - 1)
    return _Bands(out, bw, bands, span, max(0, (bands - 1) * bw + span - padded_spatial[-1]))


def _few_input_channels(a: ConvArgs) -> bool:
    if a.groups != 1 or any(s != 1 for s in a.strides) or a.x.shape[-1] >= FEW_INPUT_CHANNELS:
        return False
    padded = [size + lo + hi for size, (lo, hi) in zip(a.x.shape[1:-1], a.pads)]
    b = _bands(padded, a.kernel.shape[: a.nd], a.dilations)
    rows = a.x.shape[0] * int(np.prod(b.out[:-1])) * b.bands
    return rows * int(np.prod(a.kernel.shape[: a.nd - 1])) * b.span <= MAX_GATHER_INDEX


def _forward(x, kernel, pads, dilations):
    """One input channel: the banded GEMM; otherwise XLA's convolution."""
    if x.shape[-1] == 1:
        return _banded_gemm(x, kernel, pads, dilations)
    return _lax_conv(x, kernel, (1,) * (x.ndim - 2), pads, dilations)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _conv_few_input_channels(x, kernel, pads, dilations):
    """Stride-1 ``conv`` for few input channels, formulated for XLA:CPU (same values as XLA's conv)."""
    return _forward(x, kernel, pads, dilations)


def _conv_few_input_channels_jvp(pads, dilations, primals, tangents):
    """``dY = conv(X, dF) + conv(dX, F)``. The second term is the banded GEMM with its rows gathered from
    ``dX``: reverse mode transposes it into ``dY T^T`` scattered back to the pixels (seed 001's full
    convolution with the rotated kernel, as col2im). The first, transposed, is the kernel gradient (seed
    001's correlation of the input with the output gradient): for one input channel ``dT = R^T dY`` summed
    along the band's diagonals back onto the taps, XLA's backward-filter convolution otherwise."""
    (x, kernel), (dx, dkernel) = primals, tangents
    y = _forward(x, kernel, pads, dilations)
    terms = []
    if not isinstance(dkernel, SymbolicZero):
        terms.append(_forward(x, dkernel, pads, dilations))
    if not isinstance(dx, SymbolicZero):
        terms.append(_banded_gemm(dx, kernel, pads, dilations, gather=True))
    return y, functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)


_conv_few_input_channels.defjvp(_conv_few_input_channels_jvp, symbolic_zeros=True)


def _taps(window):
    return list(itertools.product(*[range(k) for k in window]))


def _banded_gemm(x, kernel, pads, dilations, gather: bool = False):
    """Stride-1 conv as one GEMM ``R T`` with a banded (block-Toeplitz) kernel matrix along the last spatial
    axis. A row of ``R`` holds, for one band of ``bw`` output columns, its ``span = bw + D (k - 1)`` input
    pixels (all channels) under every tap of the other axes; ``T[(u, c, m), (q, j)] = F[u, v, m, j]`` where
    ``c = q + v D`` for a kernel column ``v``, else 0. The output comes out channels-last.

    ``R`` is built from slices of the input (LeNet-5's first layer: 4 bands x 5 rows of 11 pixels per output
    row instead of one slice per tap), or with ``gather=True`` by one gather of whole pixels with a constant
    index, whose transpose is one scatter-add: the input gradient as ``dY T^T`` put back as col2im (the
    slices' transpose is a padded copy of ``dR`` per slice)."""
    nd = x.ndim - 2
    window, c_out = kernel.shape[:nd], kernel.shape[-1]
    if any(lo or hi for lo, hi in pads):
        x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    b = _bands(x.shape[1:-1], window, dilations)
    if b.extra:
        x = jnp.pad(x, ((0, 0),) * nd + ((0, b.extra), (0, 0)))
    outer = _taps(window[:-1])
    if gather:
        shape = x.shape[:-1]  # (N, *padded spatial)
        pixels = np.arange(np.prod(shape)).reshape(shape)
        corners = pixels[(slice(None), *[slice(0, o) for o in b.out[:-1]], slice(0, b.bands * b.bw, b.bw))]
        pixel_strides = np.cumprod((1, *shape[:0:-1]))[::-1][1:]  # pixels between neighbours along each axis
        offsets = np.add.outer(
            [sum(u * d * st for u, d, st in zip(taps, dilations, pixel_strides)) for taps in outer],
            np.arange(b.span) * pixel_strides[-1],
        )
        index = jnp.asarray(np.add.outer(corners.ravel(), offsets.ravel()).astype(np.int32).ravel())
        rows = x.reshape(-1, x.shape[-1]).at[index].get(mode="promise_in_bounds")
    else:
        rows = jnp.stack([
            jnp.stack([
                x[(slice(None), *[slice(u * d, u * d + o) for u, d, o in zip(taps, dilations, b.out)],
                   slice(band * b.bw, band * b.bw + b.span))]
                for taps in outer
            ], axis=nd)
            for band in range(b.bands)
        ], axis=nd)  # (N, *out[:-1], bands, outer taps, span, C_in)
    k, d = window[-1], dilations[-1]
    # on_band[v, c, q]: input column c of a band is tap v of its output column q
    on_band = np.arange(b.span)[None, :, None] - np.arange(b.bw)[None, None, :] == d * np.arange(k)[:, None, None]
    t = jnp.einsum("...vmj,vcq->...cmqj", kernel, on_band.astype(kernel.dtype), precision=lax.Precision.HIGHEST)
    t = t.reshape(-1, b.bw * c_out)  # rows (outer taps, span, C_in), as R's
    y = jnp.dot(rows.reshape(-1, t.shape[0]), t, precision=lax.Precision.HIGHEST)
    y = y.reshape(x.shape[0], *b.out[:-1], b.bands * b.bw, c_out)
    return y[..., : b.out[-1], :] if b.bands * b.bw != b.out[-1] else y
