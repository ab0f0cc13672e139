"""Pieces shared by the model zoo: BatchNorm with PyTorch's defaults, input-size checks, parameter counts.

Every model takes its convolution as a constructor argument, ``conv`` (a :data:`cnnjax.layers.ModuleDef`,
e.g. ``cnnjax.layers.conv_variant("grouped:2")``; :func:`cnnjax.models.get_model` turns a spec string into
one). It replaces every k x k (k > 1) convolution of the model's body; 1x1 convolutions (projections,
bottleneck and Inception reductions) stay standard, and so does the stem (the first conv, which sees
the 1- or 3-channel image) unless the model is built with ``conv_stem=True``. Pooling comes from
:mod:`cnnjax.layers.pooling`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax

from cnnjax.layers import BatchNorm


def require_module_defs(model: str, **module_defs) -> None:
    """A model's ``conv`` / ``pool`` must be module factories; spec strings are resolved by ``get_model``, not here."""
    for field, value in module_defs.items():
        if isinstance(value, str) or not callable(value):
            raise TypeError(
                f"{model}: {field}={value!r} must be a module factory, not a spec; "
                f"get_model({model!r}, {field}={value!r}) resolves spec strings"
            )


def batch_norm(train: bool, dtype: Any = None, name: str | None = None, **kwargs) -> BatchNorm:
    """BatchNorm with PyTorch's defaults (momentum 0.1 there = 0.9 here, eps 1e-5).

    ``train=True`` normalises with the batch statistics and updates ``batch_stats`` (apply with
    ``mutable=["batch_stats"]``); ``train=False`` uses the running averages.
    """
    return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name, **kwargs)


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
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))
