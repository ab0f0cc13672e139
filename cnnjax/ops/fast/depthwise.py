"""Depthwise convolution (``groups = C_in``, one input channel per group) as ``prod(k)`` shifted-slice
multiply-adds.

``Y[n, p, c m + j] = sum_u Xpad[n, p S + u D, c] F[u, c, j]``, one strided slice of the padded input per
tap ``u``, multiplied by that tap's per-channel weights and summed: XLA:CPU fuses the sum into one
memory-bound loop (~35x faster than the reference's forward at (32, 28, 28, 64)). The reference
(``feature_group_count = C``) is XLA:CPU's slowest case.

Derivatives (a custom VJP): the input gradient is the transpose of the slices, linear in ``X`` (one
pad per slice, fused into one loop: the depthwise conv of ``dY`` with the flipped kernel); the kernel gradient
``dF[u, c m + j] = sum_{n, p} Xpad[n, p S + u D, c] dY[n, p, c m + j]`` is :func:`kernel_gradient`, all taps
in one variadic ``lax.reduce`` (one pass over ``X`` and ``dY``), first over the batch and all spatial axes
but the last, which keeps contiguous rows, then over that axis. Measured on the idle machine, kernel
gradient of a 3x3 depthwise conv at (32, 28, 28, 64) / (8, 56, 56, 64) / (8, 14, 14, 256): 8.7 / 6.0 / 1.5
ms, against 23 / 38 / 4.0 for one reduction per tap (what automatic differentiation of the slices gives:
XLA:CPU's reductions that keep the channel axis are slow) and 27 / 25 / 14 for the reference's
``batch_group_count`` convolution (XLA:CPU rewrites it into a dense ``C x C`` convolution, ``C`` times the
useful work). JAX can differentiate neither a variadic ``lax.reduce`` nor a custom VJP in forward mode, so
``jax.jvp`` / ``jacfwd`` and second derivatives through this path raise; the reference (``with
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

from cnnjax.ops.fast.materialize import materialized

#: More taps than this (e.g. a 9x9 blur) and the unrolled sum stops paying; the reference takes it.
MAX_TAPS = 49


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
    C m)``: every tap's product in one variadic reduction over the batch and the spatial axes but the last,
    then over the last. ``X`` and ``dY`` are :func:`materialized` first: XLA had fused their producers (a
    BatchNorm's backward, a ReLU) into the reduction and recomputed them for every tap."""
    nd = x.ndim - 2
    x, dy = materialized(_padded_input(x, kernel_shape, pads)), materialized(dy)
    products = [x[_tap(u, dy.shape[1:-1], strides, dilations)] * dy
                for u in itertools.product(*[range(k) for k in kernel_shape[:nd]])]
    zeros = [jnp.zeros((), dy.dtype)] * len(products)
    rows = lax.reduce(products, zeros, lambda a, b: tuple(p + q for p, q in zip(a, b)), tuple(range(nd)))
    return jnp.stack(rows).sum(axis=1).reshape(kernel_shape)


def _padded_input(x, kernel_shape, pads):
    """``x`` zero-padded by ``pads``, its channels repeated ``m`` times (channel ``c m + j`` sees ``c``)."""
    multiplier = kernel_shape[-1] // x.shape[-1]
    x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *[(lo, hi, 0) for lo, hi in pads], (0, 0, 0)))
    return jnp.repeat(x, multiplier, axis=-1) if multiplier > 1 else x


def _tap(u, out, strides, dilations):
    """The index of tap ``u``'s strided slice ``Xpad[:, p S + u D]``, ``p < out``."""
    return (slice(None), *[slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(u, dilations, out, strides)])


def _shifted_slices(x, kernel, strides, pads, dilations):
    """``Y[n, p] = sum_u Xpad[n, p S + u D] F[u]``, the channels repeated for the multiplier."""
    nd = x.ndim - 2
    window = kernel.shape[:nd]
    x = _padded_input(x, kernel.shape, pads)
    out = [(size - d * (k - 1) - 1) // s + 1 for size, k, s, d in zip(x.shape[1:-1], window, strides, dilations)]
    weights = kernel.reshape(*window, kernel.shape[-1])
    taps = itertools.product(*[range(k) for k in window])
    return functools.reduce(jnp.add, [x[_tap(u, out, strides, dilations)] * weights[u] for u in taps])
