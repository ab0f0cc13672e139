"""Prototypes of the changes that make cnnjax's LeNet-5 train step fast on XLA:CPU (issue 7).

Nothing here changes cnnjax: each prototype swaps an op for the duration of tracing (``patched_ops``)
or wraps the real ``cnnjax.training.steps.train_step``, so the benchmark measures exactly the change
recommended for ``cnnjax.ops`` / ``cnnjax.training``:

- ``dispatch_conv``: ``ops.conv`` computed by ``ops.im2col.conv_im2col`` (patches @ kernel) when
  ``im2col_is_faster``; XLA:CPU's direct convolution is very slow for few channels.
- ``reshape_max_pool``: non-overlapping VALID max-pooling as the maximum of strided slices (its
  gradient is a few cheap selects) instead of ``reduce_window`` (whose gradient is ``select_and_scatter``).
- ``multi_step``: K train steps per dispatch (a Python-unrolled loop or ``lax.scan`` inside one jit),
  which amortises XLA:CPU's per-dispatch overhead.
"""

from __future__ import annotations

import contextlib
import functools
import itertools

import jax
import jax.numpy as jnp
from jax import lax

import cnnjax.ops
from cnnjax.ops.im2col import conv_im2col, conv_small_channels, im2col_is_faster

_ORIGINAL_CONV = cnnjax.ops.conv
_ORIGINAL_MAX_POOL = cnnjax.ops.max_pool


def dispatch_conv(x, kernel, bias=None, *, stride=1, padding="VALID", dilation=1, groups=1, pad_mode="constant"):
    """``ops.conv`` that routes to ``conv_im2col`` when ``im2col_is_faster(x.shape, kernel.shape, groups)``."""
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, pad_mode=pad_mode)
    if im2col_is_faster(jnp.shape(x), jnp.shape(kernel), groups):
        return conv_im2col(x, kernel, bias, **kw)
    return _ORIGINAL_CONV(x, kernel, bias, **kw)


def reshape_max_pool(x, window=2, stride=None, padding="VALID"):
    """``ops.max_pool``; windows that tile the input exactly (stride = window, VALID) use the elementwise
    maximum of the window's ``prod(window)`` strided slices (its gradient is a few selects, ~3x cheaper on
    XLA:CPU than reshape + max and ~10x cheaper than ``reduce_window``'s ``select_and_scatter``)."""
    nd = x.ndim - 2
    win = (window,) * nd if isinstance(window, int) else tuple(window)
    st = win if stride is None else ((stride,) * nd if isinstance(stride, int) else tuple(stride))
    if (st == win and isinstance(padding, str) and padding.upper() == "VALID"
            and all(s % k == 0 for s, k in zip(x.shape[1:-1], win))
            and jnp.issubdtype(x.dtype, jnp.floating)):
        y = None
        for offsets in itertools.product(*[range(k) for k in win]):
            part = x[(slice(None), *[slice(o, None, k) for o, k in zip(offsets, win)], slice(None))]
            y = part if y is None else jnp.maximum(y, part)
        return y
    return _ORIGINAL_MAX_POOL(x, window, stride, padding)


CONV_PROTOTYPES = {"im2col": dispatch_conv, "small": conv_small_channels}


@contextlib.contextmanager
def patched_ops(conv=True, pool: bool = True):
    """Swap ``cnnjax.ops.conv`` / ``max_pool`` (looked up by layers at trace time) for the prototypes.

    ``conv``: False (unchanged), True / "im2col" (``dispatch_conv``) or "small" (``conv_small_channels``).
    """
    saved = cnnjax.ops.conv, cnnjax.ops.max_pool
    try:
        if conv:
            cnnjax.ops.conv = CONV_PROTOTYPES["im2col" if conv is True else conv]
        if pool:
            cnnjax.ops.max_pool = reshape_max_pool
        yield
    finally:
        cnnjax.ops.conv, cnnjax.ops.max_pool = saved


def multi_step(step_fn, state, batches, *, unroll: bool = True):
    """Run ``step_fn`` on each of the K batches stacked on axis 0; return the state and stacked metrics.

    ``unroll=True``: a Python loop (K copies of the step in one XLA program); False: ``lax.scan``.
    """
    k = jax.tree_util.tree_leaves(batches)[0].shape[0]
    if not unroll:
        return lax.scan(step_fn, state, batches)
    metrics = []
    for i in range(k):
        state, m = step_fn(state, jax.tree_util.tree_map(lambda b, i=i: b[i], batches))
        metrics.append(m)
    return state, jax.tree_util.tree_map(lambda *m: jnp.stack(m), *metrics)


def jit_with_ops(fn, conv: bool, pool: bool, **jit_kwargs):
    """``jax.jit(fn)`` whose tracing (first call) happens with ``patched_ops(conv, pool)``."""
    def fresh(*args):  # a new function object: its own trace cache, never shared with another variant
        return fn(*args)

    jitted = jax.jit(fresh, **jit_kwargs)

    @functools.wraps(fn)
    def call(*args):
        with patched_ops(conv, pool):
            return jitted(*args)

    return call
