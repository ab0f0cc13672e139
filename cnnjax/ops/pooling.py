"""Pooling over the spatial axes of ``(N, *spatial, C)`` arrays (seeds 000, 001, 003).

A window slides over each channel separately and reduces its cells by a function: max (the most
common), average or sum. The stride defaults to the window (non-overlapping windows, Keras'
``strides=None``). Padding is "VALID", "SAME", "FULL", an int or (lo, hi) pairs, as for convolution.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnjax.ops import fast
from cnnjax.ops.args import as_tuple
from cnnjax.ops.padding import normalize_padding


def _window_args(x, window, stride, padding):
    x = jnp.asarray(x)
    nd = x.ndim - 2
    if nd < 1:
        raise ValueError(f"x.shape={x.shape} must be (N, *spatial, C) with at least one spatial axis")
    window = as_tuple(window, nd, "window")
    stride = window if stride is None else as_tuple(stride, nd, "stride")
    pads = normalize_padding(padding, window, (1,) * nd)
    for axis, (size, k, (lo, hi)) in enumerate(zip(x.shape[1:-1], window, pads)):
        if size + lo + hi < k:
            raise ValueError(
                f"window {k} on spatial axis {axis} is larger than the padded input {size} + {lo} + {hi}"
            )
        if lo >= k or hi >= k:
            raise ValueError(
                f"padding={padding!r} gives ({lo}, {hi}) on spatial axis {axis}: it must be smaller than the "
                f"window {k}, or some windows would see only padding"
            )
    return x, (1, *window, 1), (1, *stride, 1), ((0, 0), *pads, (0, 0))


def _scalar(x, value):
    """The init value for ``lax.reduce_window``: a Python scalar for float inputs (so lax picks its
    differentiable max/sum-pool primitives; an array init is not differentiable under jit), a NumPy scalar of
    ``x``'s dtype for integer inputs (a Python int would be taken as int32)."""
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return float(value)
    return np.array(value, x.dtype)


def _float(x):
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.float32)


def max_pool(x, window=2, stride=None, padding="VALID"):
    """Max pooling (seeds 000/001/003): ``y[n, p, c] = max_{u in window} x[n, p S + u, c]``.

    Padded cells are ``-inf``, so they never win. The gradient flows only to the arg-max of each window
    (the first in row-major order when several cells tie, as in PyTorch; a NaN wins its window). The
    reference is ``lax.reduce_window``; windows that tile the input (stride = window, no padding) take
    :mod:`cnnjax.ops.fast`'s tiled formulation on CPU (same values and gradients).

    Args:
      x: ``(N, *spatial, C)``, 1 to 3 (or more) spatial axes.
      window: int or one int per spatial axis.
      stride: defaults to ``window``.
      padding: "VALID", "SAME", "FULL", an int or (lo, hi) pairs; each side smaller than the window.
    """
    x, window, stride, pads = _window_args(x, window, stride, padding)
    init = _scalar(x, -np.inf if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.iinfo(x.dtype).min)

    def reference(x):
        return lax.reduce_window(x, init, lax.max, window, stride, pads)

    return fast.max_pool(x, window[1:-1], stride[1:-1], pads[1:-1], reference)


def sum_pool(x, window=2, stride=None, padding="VALID"):
    """Sum pooling (seed 000): ``y[n, p, c] = sum_{u in window} x[n, p S + u, c]``; padded cells count as 0."""
    x, window, stride, pads = _window_args(x, window, stride, padding)
    return lax.reduce_window(x, _scalar(x, 0), lax.add, window, stride, pads)


def avg_pool(x, window=2, stride=None, padding="VALID", count_include_pad: bool = True):
    """Average pooling (seeds 000/001/003): ``y[n, p, c] = (1 / |window|) sum_{u in window} x[n, p S + u, c]``.

    With ``count_include_pad=True`` (PyTorch's default) padded cells are zeros and count in ``|window|``;
    with ``False`` the sum is divided by the number of real (unpadded) cells in each window (Keras /
    TensorFlow ``padding='same'`` behaviour). Integer inputs are converted to float32.
    """
    x, window, stride, pads = _window_args(_float(jnp.asarray(x)), window, stride, padding)
    total = lax.reduce_window(x, _scalar(x, 0), lax.add, window, stride, pads)
    if count_include_pad or all(lo == hi == 0 for lo, hi in pads):
        size = 1
        for w in window:
            size *= w
        return total / jnp.asarray(size, x.dtype)
    ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
    counts = lax.reduce_window(ones, _scalar(x, 0), lax.add, window, stride, pads)
    return total / counts


def _global_axes(x):
    x = jnp.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"x.shape={x.shape} must be (N, *spatial, C) with at least one spatial axis")
    return x, tuple(range(1, x.ndim - 1))


def global_avg_pool(x, keepdims: bool = False):
    """Global average pooling (seed 003, transfer learning head): ``y[n, c] = mean_p x[n, p, c]``.

    Returns ``(N, C)``, or ``(N, 1, ..., 1, C)`` with ``keepdims=True``.
    """
    x, axes = _global_axes(x)
    return jnp.mean(_float(x), axis=axes, keepdims=keepdims)


def global_max_pool(x, keepdims: bool = False):
    """Global max pooling (max pooling of seeds 000/001/003 with the window = the whole map):
    ``y[n, c] = max_p x[n, p, c]``; ``(N, C)`` or ``(N, 1, ..., 1, C)``."""
    x, axes = _global_axes(x)
    return jnp.max(x, axis=axes, keepdims=keepdims)
