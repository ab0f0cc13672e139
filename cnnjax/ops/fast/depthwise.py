"""Depthwise convolution (``groups = C_in``, one input channel per group) as ``prod(k)`` shifted-slice
multiply-adds.

``Y[n, p, c m + j] = sum_u Xpad[n, p S + u D, c] F[u, c, j]``, one strided slice of the padded input per
tap ``u``, multiplied by that tap's per-channel weights and summed: XLA:CPU fuses the sum into one
memory-bound loop (~35x faster than the reference's forward at (32, 28, 28, 64)). The reference
(``feature_group_count = C``) is XLA:CPU's slowest case.

Derivatives (a custom VJP): the input gradient is the transpose of the slices, linear in ``X`` (one
pad per slice, fused into one loop: the depthwise conv of ``dY`` with the flipped kernel); the kernel gradient
``dF[u, c m + j] = sum_{n, p} Xpad[n, p S + u D, c] dY[n, p, c m + j]`` is :func:`kernel_gradient`, every
sum as elementwise adds (per tap, the batch in groups of :data:`BATCH_FOLD` images; then the rest, folded by
8 again), which XLA vectorizes: XLA:CPU runs a reduction that keeps the channel axis one element at a time.
Kernel gradient of a 3x3 depthwise conv, ms, one variadic ``lax.reduce`` of all taps (this module's
formulation until 2026-12-02) / folded, two cores: (128, 32, 32, 16) 15.1 / 5.8, (128, 16, 16, 32) 5.6 / 2.0,
(128, 8, 8, 64) 1.9 / 1.1, (32, 28, 28, 64) 14.2 / 4.5, (8, 56, 56, 64) 4.4 / 3.4, (8, 14, 14, 256) 1.7 / 0.95
(one reduction per tap, what automatic differentiation of the slices gives, was slower than either; the
reference's ``batch_group_count`` convolution is rewritten by XLA:CPU into a dense ``C x C`` convolution,
``C`` times the useful work). JAX cannot differentiate a custom VJP in forward mode, so ``jax.jvp`` /
``jacfwd`` and second derivatives through this path raise; the reference (``with
cnnjax.ops.fast.reference_only():``) has them. A channel multiplier ``m > 1`` repeats the input channels once
(``c -> c m + j``) so that every array keeps one flat channel axis (an ``(..., C, m)`` axis pair made both
gradients ~5x slower).

The terms are those of ``lax.conv_general_dilated`` (padded cells included), so NaN and Inf in the input
propagate the same way; only the order of the float32 sums differs.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnjax.ops.arithmetic import output_size
from cnnjax.ops.fast.materialize import materialized

#: More taps than this (e.g. a 9x9 blur) and the unrolled sum stops paying; the reference takes it.
MAX_TAPS = 49
#: The kernel gradient's sums add this many rows at a time elementwise (in a first version, which folded the
#: batch only, groups of 4 and 16 images were slower than 8).
BATCH_FOLD = 8


def applies(x_shape, kernel_shape, groups) -> bool:
    """Depthwise: one input channel per group (any channel multiplier), at most ``MAX_TAPS`` taps."""
    nd = len(x_shape) - 2
    return groups > 1 and groups == x_shape[-1] and kernel_shape[-2] == 1 and np.prod(kernel_shape[:nd]) <= MAX_TAPS


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def depthwise_conv(x, kernel, strides, pads, dilations):
    """``x`` ``(N, *spatial, C)``, ``kernel`` ``(*k, 1, C m)`` (conv's grouped layout) -> ``(N, *out, C m)``:
    one strided slice of the padded input per tap, times its weights, summed."""
    return _shifted_slices(x, kernel, strides, pads, dilations)


def _depthwise_conv_fwd(x, kernel, strides, pads, dilations):
    return _shifted_slices(x, kernel, strides, pads, dilations), (x, kernel)


def _depthwise_conv_bwd(strides, pads, dilations, residuals, dy):
    x, kernel = residuals
    # the slices are linear in x: the input gradient is their transpose (no forward pass to recompute)
    (dx,) = jax.linear_transpose(lambda x: _shifted_slices(x, kernel, strides, pads, dilations), x)(dy)
    return dx, kernel_gradient(x, dy, kernel.shape, strides, pads, dilations)


depthwise_conv.defvjp(_depthwise_conv_fwd, _depthwise_conv_bwd)


def kernel_gradient(x, dy, kernel_shape, strides, pads, dilations):
    """``dF[u, c m + j] = sum_{n, p} Xpad[n, p S + u D, c] dY[n, p, c m + j]`` for ``kernel_shape`` ``(*k, 1,
    C m)``, every sum by elementwise adds (:func:`_fold`, which XLA vectorizes, where its reductions
    that keep the channel axis run one element at a time): per tap, the products of each group of
    :data:`BATCH_FOLD` images; then the taps' folded sums, stacked, over the rest. ``X`` and ``dY`` are
    :func:`materialized` first: XLA had fused their producers (a BatchNorm's backward, a ReLU) into the sums
    and recomputed them for every tap."""
    nd = x.ndim - 2
    extra = -x.shape[0] % min(BATCH_FOLD, x.shape[0])  # zero images, so that the groups are whole
    x = materialized(_padded_input(x, kernel_shape, pads, extra_images=extra))
    dy = materialized(lax.pad(dy, jnp.zeros((), dy.dtype), ((0, extra, 0),) + ((0, 0, 0),) * (nd + 1)))
    folded = []
    for u in itertools.product(*[range(k) for k in kernel_shape[:nd]]):
        products = x[_tap(u, dy.shape[1:-1], strides, dilations)] * dy
        folded.append(_fold(products))  # (N / BATCH_FOLD, *out, C m)
    taps = jnp.stack(folded, axis=nd)  # (N / BATCH_FOLD, *out[:-1], taps, out[-1], C m): a tap's rows together
    rows = _sum_leading(taps.reshape(-1, *taps.shape[nd:]))  # (taps, out[-1], C m)
    return _sum_leading(jnp.moveaxis(rows, 1, 0)).reshape(kernel_shape)


def _fold(a):
    """``a`` ``(M, ...)`` -> ``(ceil(M / BATCH_FOLD), ...)``: each group of :data:`BATCH_FOLD` rows added up
    elementwise (zero rows padded to a whole group)."""
    fold = min(BATCH_FOLD, a.shape[0])
    extra = -a.shape[0] % fold
    if extra:
        a = jnp.pad(a, ((0, extra),) + ((0, 0),) * (a.ndim - 1))
    groups = a.reshape(-1, fold, *a.shape[1:])
    return functools.reduce(jnp.add, [groups[:, i] for i in range(fold)])


def _sum_leading(a):
    """``a`` summed over its first axis by :func:`_fold` until one row is left."""
    while a.shape[0] > 1:
        a = _fold(a)
    return a[0]


def _padded_input(x, kernel_shape, pads, extra_images=0):
    """``x`` zero-padded by ``pads`` (and ``extra_images`` zero images after the batch), its channels
    repeated ``m`` times (channel ``c m + j`` sees ``c``)."""
    multiplier = kernel_shape[-1] // x.shape[-1]
    x = lax.pad(x, jnp.zeros((), x.dtype), ((0, extra_images, 0), *[(lo, hi, 0) for lo, hi in pads], (0, 0, 0)))
    return jnp.repeat(x, multiplier, axis=-1) if multiplier > 1 else x


def _tap(u, out, strides, dilations):
    """The index of tap ``u``'s strided slice ``Xpad[:, p S + u D]``, ``p < out``."""
    return (slice(None), *[slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(u, dilations, out, strides)])


def _shifted_slices(x, kernel, strides, pads, dilations):
    """``Y[n, p] = sum_u Xpad[n, p S + u D] F[u]``, the channels repeated for the multiplier."""
    nd = x.ndim - 2
    window = kernel.shape[:nd]
    x = _padded_input(x, kernel.shape, pads)
    out = [output_size(size, k, s, 0, d) for size, k, s, d in zip(x.shape[1:-1], window, strides, dilations)]
    weights = kernel.reshape(*window, kernel.shape[-1])
    taps = itertools.product(*[range(k) for k in window])
    return functools.reduce(jnp.add, [x[_tap(u, out, strides, dilations)] * weights[u] for u in taps])
