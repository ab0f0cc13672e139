"""Pooling layers (no parameters): thin modules over :mod:`cnnjax.ops.pooling` for ``nn.Sequential`` use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn

from cnnjax import ops
from cnnjax.layers.conv import names_the_layer


class MaxPool(nn.Module):
    """:func:`cnnjax.ops.max_pool`; ``strides=None`` means the window."""

    window: int | Sequence[int] = 2
    strides: int | Sequence[int] | None = None
    padding: Any = "VALID"

    @nn.compact
    @names_the_layer
    def __call__(self, x):
        return ops.max_pool(x, self.window, self.strides, self.padding)


class AvgPool(nn.Module):
    """:func:`cnnjax.ops.avg_pool`; ``strides=None`` means the window."""

    window: int | Sequence[int] = 2
    strides: int | Sequence[int] | None = None
    padding: Any = "VALID"
    count_include_pad: bool = True

    @nn.compact
    @names_the_layer
    def __call__(self, x):
        return ops.avg_pool(x, self.window, self.strides, self.padding, self.count_include_pad)


class SumPool(nn.Module):
    """:func:`cnnjax.ops.sum_pool`; ``strides=None`` means the window."""

    window: int | Sequence[int] = 2
    strides: int | Sequence[int] | None = None
    padding: Any = "VALID"

    @nn.compact
    @names_the_layer
    def __call__(self, x):
        return ops.sum_pool(x, self.window, self.strides, self.padding)


class GlobalAvgPool(nn.Module):
    """:func:`cnnjax.ops.global_avg_pool`: ``(N, *spatial, C) -> (N, C)``."""

    keepdims: bool = False

    @nn.compact
    @names_the_layer
    def __call__(self, x):
        return ops.global_avg_pool(x, self.keepdims)


class GlobalMaxPool(nn.Module):
    """:func:`cnnjax.ops.global_max_pool`: ``(N, *spatial, C) -> (N, C)``."""

    keepdims: bool = False

    @nn.compact
    @names_the_layer
    def __call__(self, x):
        return ops.global_max_pool(x, self.keepdims)


#: Pooling by name, for a model's ``pool`` argument (a module called like ``MaxPool(window, strides, padding)``).
POOLING = {"max": MaxPool, "avg": AvgPool}


def pooling(spec: str) -> type[nn.Module]:
    """The pooling module named by ``spec`` ("max" or "avg")."""
    if not isinstance(spec, str) or spec.strip().lower() not in POOLING:
        raise ValueError(f"pool={spec!r} is unknown; allowed: {', '.join(POOLING)}")
    return POOLING[spec.strip().lower()]
