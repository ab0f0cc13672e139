"""Pooling over the spatial axes of ``(N, *spatial, C)`` arrays (seeds 000, 001, 003)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from cnnjax.ops.conv import as_tuple
from cnnjax.ops.padding import normalize_padding


def _pool(x, init, reducer, window, stride, padding):
    nd = x.ndim - 2
    if nd < 1:
        raise ValueError(f"x.shape={x.shape} must be (N, *spatial, C) with at least one spatial axis")
    window = as_tuple(window, nd, "window")
    stride = window if stride is None else as_tuple(stride, nd, "stride")
    pads = normalize_padding(padding, window, (1,) * nd)
    for axis, (size, k, (lo, hi)) in enumerate(zip(x.shape[1:-1], window, pads)):
        if size + lo + hi < k:
            raise ValueError(f"window {k} on axis {axis} is larger than the padded input {size} + {lo} + {hi}")
    return lax.reduce_window(
        x, init, reducer, (1, *window, 1), (1, *stride, 1), ((0, 0), *pads, (0, 0))
    )


def max_pool(x, window=2, stride=None, padding="VALID"):
    """Max pooling: ``y[p] = max_{u in window} x[p*S + u]``; stride defaults to the window.

    Padded cells are -inf, so they never win. The gradient flows only to the arg-max of each window.
    """
    return _pool(x, -jnp.inf, lax.max, window, stride, padding)


def sum_pool(x, window=2, stride=None, padding="VALID"):
    """Sum pooling: ``y[p] = sum_{u in window} x[p*S + u]`` (padded cells count as zero)."""
    return _pool(x, jnp.zeros((), x.dtype), lax.add, window, stride, padding)
