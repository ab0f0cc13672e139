"""Max pooling over windows that tile the input (stride = window, no padding) as the elementwise maximum of
the window's cells, instead of ``reduce_window`` + ``select_and_scatter``.

Same values and gradient as the reference (the gradient goes to the first arg-max of each window in
row-major order, as in PyTorch; a NaN wins its window; forward mode too), but XLA:CPU runs it as a few fused
loops instead of ``select_and_scatter`` (which it lowers to a scatter with index arrays): ~40% of a LeNet-5
train step. The winner's index is a chain of selects, not ``argmax`` (a variadic reduction over the stacked
cells, which XLA:CPU runs one element at a time: 0.86 ms of a ~6 ms LeNet-5 step for pool1).
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp

from cnnjax.ops.fast.materialize import materialized


def applies(x, window, stride, pads) -> bool:
    """Floating input whose windows tile it: stride = window, no padding."""
    return window == stride and all(lo == hi == 0 for lo, hi in pads) and jnp.issubdtype(x.dtype, jnp.floating)


def tiled_max_pool(x, window):
    """``x`` ``(N, *spatial, C)``, ``window`` one int per spatial axis; the cells past the last whole window
    are cut off (VALID)."""
    crop = tuple(slice(0, (size // k) * k) for size, k in zip(x.shape[1:-1], window))
    return _max_of_cells(x[(slice(None), *crop, slice(None))], tuple(window))


def _window_cells(x, window):
    """The ``prod(window)`` strided slices ``x[:, u::k, ..., :]`` (row-major ``u``) of an input that the
    windows tile exactly: cell ``u`` of every window at once."""
    return tuple(
        x[(slice(None), *[slice(u, None, k) for u, k in zip(offsets, window)], slice(None))]
        for offsets in itertools.product(*[range(k) for k in window])
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_of_cells(x, window):
    return _elementwise_max(_window_cells(x, window))


def _elementwise_max(cells):
    return functools.reduce(jnp.maximum, cells)


def _split_windows(x, window):
    """``(N, *spatial, C)`` -> ``(N, s_1 / k_1, k_1, s_2 / k_2, k_2, ..., C)``: each window's cells on axes of
    their own (a reshape; the windows tile ``x``)."""
    shape = [x.shape[0]]
    for size, k in zip(x.shape[1:-1], window):
        shape += [size // k, k]
    return x.reshape(*shape, x.shape[-1])


@_max_of_cells.defjvp
def _max_of_cells_jvp(window, primals, tangents):
    """``dy = dx`` at the first cell equal to the maximum (or the first NaN, which max propagates).

    The winning cell's row-major index is computed elementwise (a chain of selects, last cell first) and made
    a buffer of its own (``materialized``, in float32: exact up to 2^24 cells), so that the backward pass reads
    it instead of recomputing the window in every consumer; ``dy`` sums ``dx`` masked to the winner over each
    window's cells (``_split_windows``), whose transpose is one select per input element. A JVP rather than a
    VJP keeps forward mode (``jax.jvp``, ``jax.jacfwd``)."""
    (x,), (dx,) = primals, tangents
    cells = _window_cells(x, window)
    y = _elementwise_max(cells)
    winner = jnp.full(y.shape, len(cells) - 1, jnp.float32)
    for k in reversed(range(len(cells) - 1)):
        winner = jnp.where((cells[k] == y) | jnp.isnan(cells[k]), jnp.float32(k), winner)
    winner = materialized(winner)
    cell_axes = tuple(range(2, 2 + 2 * len(window), 2))
    cell_index = jnp.arange(len(cells), dtype=jnp.float32).reshape(1, *[n for k in window for n in (1, k)], 1)
    wins = jnp.expand_dims(winner, cell_axes) == cell_index
    d_cells = _split_windows(dx, window)
    return y, jnp.sum(jnp.where(wins, d_cells, jnp.zeros_like(d_cells)), axis=cell_axes)
