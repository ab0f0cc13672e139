"""Pieces shared by the model zoo: the conv-variant switch, pooling modules, BatchNorm, input-size checks.

The ``conv`` option of every model is a string spec handed to :func:`cnnjax.layers.conv_layer`:
"standard", "separable", "grouped:G", "dilated:D", "deformable", "deformable_v2", "locally_connected".
It replaces every k x k (k > 1) convolution of the model's body; 1x1 convolutions (projections,
bottleneck and Inception reductions) stay standard, and so does the stem (the first conv, which sees
the 1- or 3-channel image) unless the model is built with ``conv_stem=True``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax import ops
from cnnjax.layers import Conv

#: Variant names understood by the switch (``grouped`` and ``dilated`` take ``:N``).
KNOWN_VARIANTS = (
    "standard",
    "separable",
    "grouped",
    "dilated",
    "deformable",
    "deformable_v2",
    "locally_connected",
)


def _layers_conv_layer():
    """``cnnjax.layers.conv_layer`` when the layers package provides it, else ``None``."""
    try:
        from cnnjax.layers import conv_layer  # noqa: PLC0415
    except ImportError:
        return None
    return conv_layer


def parse_conv_variant(spec: str, model: str = "model") -> tuple[str, int]:
    """``"grouped:4"`` -> ``("grouped", 4)``; ``"standard"`` -> ``("standard", 1)``. Validates the spec.

    Raises:
      ValueError: unknown variant, missing or non-positive ``:N`` for grouped/dilated, or ``:N`` on a
        variant that takes none.
    """
    if not isinstance(spec, str):
        raise TypeError(f"{model}: conv={spec!r} must be a string such as 'standard' or 'grouped:2'")
    kind, sep, arg = spec.partition(":")
    allowed = "standard, separable, grouped:G, dilated:D, deformable, deformable_v2, locally_connected"
    if kind not in KNOWN_VARIANTS:
        raise ValueError(f"{model}: conv={spec!r} is unknown; allowed: {allowed}")
    if kind in ("grouped", "dilated"):
        if not sep:
            return kind, 2  # bare "grouped" / "dilated" mean ":2", as in cnnjax.layers.conv_layer
        if not arg.isdigit() or int(arg) < 1:
            letter = "G" if kind == "grouped" else "D"
            raise ValueError(f"{model}: conv={spec!r} needs a positive integer, e.g. '{kind}:2' ({kind}:{letter})")
        return kind, int(arg)
    if sep:
        raise ValueError(f"{model}: conv={spec!r}: variant {kind!r} takes no ':N' argument; allowed: {allowed}")
    return kind, 1


def check_conv_variant(spec: str, model: str, layers: Sequence[tuple[str, int, int]]) -> None:
    """Fail early, with the layer named, when ``spec`` cannot be used by a model.

    Args:
      spec: the ``conv`` option.
      model: the model's name, for the message.
      layers: ``(layer name, in_channels, out_channels)`` of every conv the variant would replace.
    """
    kind, n = parse_conv_variant(spec, model)
    if kind == "grouped":
        for name, c_in, c_out in layers:
            if c_in % n or c_out % n:
                raise ValueError(
                    f"{model}: conv={spec!r} cannot be used: layer {name} has in_channels={c_in}, "
                    f"out_channels={c_out}, and groups={n} must divide both"
                )


def make_conv(
    variant: str,
    features: int,
    kernel_size: int,
    *,
    strides: int = 1,
    padding: Any = "SAME",
    use_bias: bool = True,
    dtype: Any = None,
    name: str | None = None,
    kernel_init=None,
) -> nn.Module:
    """A convolution module of the given variant (see the module docstring).

    "standard", "grouped:G" and "dilated:D" are :class:`cnnjax.layers.Conv`; the other variants come
    from :func:`cnnjax.layers.conv_layer`.
    """
    kind, n = parse_conv_variant(variant)
    extra = {} if kernel_init is None else {"kernel_init": kernel_init}
    if kind in ("standard", "grouped", "dilated"):
        return Conv(
            features,
            kernel_size,
            strides=strides,
            padding=padding,
            groups=n if kind == "grouped" else 1,
            dilation=n if kind == "dilated" else 1,
            use_bias=use_bias,
            dtype=dtype,
            name=name,
            **extra,
        )
    conv_layer = _layers_conv_layer()
    if conv_layer is None:
        raise ValueError(f"conv={variant!r} needs cnnjax.layers.conv_layer, which this installation does not provide")
    return conv_layer(
        variant, features, kernel_size, strides=strides, padding=padding, use_bias=use_bias, dtype=dtype, name=name
    )


def batch_norm(train: bool, dtype: Any = None, name: str | None = None, **kwargs) -> nn.BatchNorm:
    """BatchNorm with PyTorch's defaults (momentum 0.1 there = 0.9 here, eps 1e-5).

    ``train=True`` normalises with the batch statistics and updates ``batch_stats`` (apply with
    ``mutable=["batch_stats"]``); ``train=False`` uses the running averages.
    """
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name, **kwargs)


class MaxPool(nn.Module):
    """Max pooling as a module (so summaries see it): :func:`cnnjax.ops.max_pool`."""

    window: int = 2
    strides: int | None = None
    padding: Any = "VALID"

    def __call__(self, x):
        return ops.max_pool(x, self.window, self.strides, self.padding)


class AvgPool(nn.Module):
    """Average pooling as a module: ``sum_pool / window^2`` (padded cells count as zeros)."""

    window: int = 2
    strides: int | None = None
    padding: Any = "VALID"

    def __call__(self, x):
        total = ops.sum_pool(x, self.window, self.strides, self.padding)
        return total / (self.window * self.window)


class GlobalAvgPool(nn.Module):
    """``(N, H, W, C) -> (N, C)``: the mean over all spatial positions."""

    def __call__(self, x):
        return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))


def min_input_size(layers: Sequence[tuple[int, int, Any, int]]) -> int:
    """Smallest square input side for which every layer of a chain produces at least one cell.

    Args:
      layers: ``(kernel, stride, padding, dilation)`` along the main path, in order; padding is
        "VALID", "SAME" (this codebase's SAME pads ``D (M - 1)`` in total, whatever the stride), an int,
        or a ``(lo, hi)`` pair.

    Works backwards from one output cell: ``H_in >= (H_out - 1) S + D (M - 1) + 1 - P_lo - P_hi``.
    """
    need = 1
    for kernel, stride, padding, dilation in reversed(list(layers)):
        eff = dilation * (kernel - 1) + 1
        if isinstance(padding, str):
            total = {"VALID": 0, "SAME": eff - 1, "FULL": 2 * (eff - 1)}[padding.upper()]
        elif isinstance(padding, int):
            total = 2 * padding
        else:
            total = int(padding[0]) + int(padding[1])
        need = max(1, (need - 1) * stride + eff - total)
    return need


def check_input(x, model: str, min_size: int, max_size: int | None = None, ndim: int = 4) -> None:
    """Raise a clear ValueError for an input of the wrong rank or spatial size (before any layer runs)."""
    shape = tuple(x.shape)
    if len(shape) != ndim:
        raise ValueError(f"{model}: input shape {shape} must be (N, H, W, C)")
    h, w = shape[1], shape[2]
    if min(h, w) < min_size:
        raise ValueError(
            f"{model}: input {h}x{w} is too small for this network; the minimum input size is {min_size}x{min_size}"
        )
    if max_size is not None and max(h, w) > max_size:
        raise ValueError(f"{model}: input {h}x{w} is too large; this network takes at most {max_size}x{max_size}")


def count_params(params) -> int:
    """Number of scalars in a parameter pytree (arrays or ShapeDtypeStructs)."""
    import jax  # noqa: PLC0415

    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))
