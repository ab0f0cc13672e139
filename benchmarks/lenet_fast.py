"""Prototypes of the changes that make cnnjax's LeNet-5 train step fast on XLA:CPU (issue 7).

Nothing here changes cnnjax: each prototype swaps ``ops.conv`` for the duration of tracing (``patched_ops``)
or wraps the real ``cnnjax.training.steps.train_step``, so the benchmark measures exactly the change
recommended for ``cnnjax.ops`` / ``cnnjax.training``:

- ``dispatch_conv``: ``ops.conv`` computed by ``benchmarks.im2col.conv_im2col`` (patches @ kernel) when
  ``im2col_is_faster``; XLA:CPU's direct convolution is very slow for few channels.
- ``multi_step``: K train steps per dispatch (a Python-unrolled loop or ``lax.scan`` inside one jit),
  which amortises XLA:CPU's per-dispatch overhead.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
from jax import lax

import cnnjax.ops
from benchmarks.im2col import conv_im2col, im2col_is_faster

_ORIGINAL_CONV = cnnjax.ops.conv


def dispatch_conv(x, kernel, bias=None, *, stride=1, padding="VALID", dilation=1, groups=1, pad_mode="constant"):
    """``ops.conv`` that routes to ``conv_im2col`` when ``im2col_is_faster(x.shape, kernel.shape, groups)``."""
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, pad_mode=pad_mode)
    if im2col_is_faster(jnp.shape(x), jnp.shape(kernel), groups):
        return conv_im2col(x, kernel, bias, **kw)
    return _ORIGINAL_CONV(x, kernel, bias, **kw)


CONV_PROTOTYPES = {"im2col": dispatch_conv}


@contextlib.contextmanager
def patched_ops(conv=True):
    """Swap ``cnnjax.ops.conv`` (looked up by layers at trace time) for a prototype.

    ``conv``: False (unchanged) or True / "im2col" (``dispatch_conv``). (The small-channel conv and the
    strided-slice max-pool prototypes that lived here are now part of ``ops.conv`` and ``ops.max_pool``.)
    """
    saved = cnnjax.ops.conv
    try:
        if conv:
            cnnjax.ops.conv = CONV_PROTOTYPES["im2col" if conv is True else conv]
        yield
    finally:
        cnnjax.ops.conv = saved


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


def jit_with_ops(fn, conv: bool | str, **jit_kwargs):
    """``jax.jit(fn)`` whose tracing (first call) happens with ``patched_ops(conv)``."""
    def fresh(*args):  # a new function object: its own trace cache, never shared with another variant
        return fn(*args)

    jitted = jax.jit(fresh, **jit_kwargs)

    @functools.wraps(fn)
    def call(*args):
        with patched_ops(conv):
            return jitted(*args)

    return call
