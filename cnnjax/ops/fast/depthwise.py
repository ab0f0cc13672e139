"""Depthwise convolution (``groups = C_in``, one input channel per group) as ``prod(k)`` shifted-slice
multiply-adds.

``Y[n, p, c m + j] = sum_u Xpad[n, p S + u D, c] F[u, c, j]``, one strided slice of the padded input per
tap ``u``, multiplied by that tap's per-channel weights and summed: XLA:CPU fuses the sum into one
memory-bound loop (~35x faster than the reference's forward at (32, 28, 28, 64)). The reference
(``feature_group_count = C``) is XLA:CPU's slowest case.

Derivatives (a custom JVP, so forward mode works too): the input term is the slices' sum applied to ``dX``,
whose transpose (one pad per slice) is the depthwise conv of ``dY`` with the flipped kernel. The kernel term
is written as the transpose of :func:`kernel_gradient`, so that reverse mode runs that function itself:
``dF[u, c m + j] = sum_{n, p} Xpad[n, p S + u D, c] dY[n, p, c m + j]``, one multiply-reduce per tap over
batch chunks of about a core's L2 cache (``lax.scan``): XLA:CPU's reductions that keep the channel axis slow
down ~4x once their operands leave the cache. The reference's kernel gradient (``batch_group_count = C``,
which XLA:CPU rewrites into a dense ``C x C`` convolution, ``C`` times the useful work) measured 10-15x
slower at LeNet-5's shape (128, 14, 14, 6) with multiplier 3. A channel multiplier ``m > 1`` repeats the
input channels once (``c -> c m + j``) so that every array keeps one flat channel axis: broadcasting an
``(..., C, m)`` axis pair instead made both gradients ~5x slower.

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
from jax.custom_derivatives import SymbolicZero

#: More taps than this (e.g. a 9x9 blur) and the unrolled sum stops paying; the reference takes it.
MAX_TAPS = 49


def applies(x_shape, kernel_shape, groups) -> bool:
    """Depthwise: one input channel per group (any channel multiplier), at most ``MAX_TAPS`` taps."""
    nd = len(x_shape) - 2
    return groups > 1 and groups == x_shape[-1] and kernel_shape[-2] == 1 and np.prod(kernel_shape[:nd]) <= MAX_TAPS


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def depthwise_conv(x, kernel, strides, pads, dilations):
    """``x`` ``(N, *spatial, C)``, ``kernel`` ``(*k, 1, C m)`` (conv's grouped layout) -> ``(N, *out, C m)``:
    one strided slice of the padded input per tap, times its weights, summed."""
    return _shifted_slices(x, kernel, strides, pads, dilations)


def _depthwise_conv_jvp(strides, pads, dilations, primals, tangents):
    """``dY = slices(dX, F) + kernel_gradient^T(dF)`` (see the module docstring)."""
    (x, kernel), (dx, dkernel) = primals, tangents
    y = _shifted_slices(x, kernel, strides, pads, dilations)
    terms = []
    if not isinstance(dx, SymbolicZero):
        terms.append(_shifted_slices(dx, kernel, strides, pads, dilations))
    if not isinstance(dkernel, SymbolicZero):
        gradient = functools.partial(kernel_gradient, x, kernel_shape=kernel.shape, strides=strides, pads=pads,
                                     dilations=dilations)
        (term,) = jax.linear_transpose(gradient, jax.ShapeDtypeStruct(y.shape, y.dtype))(dkernel)
        terms.append(term)
    return y, functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)


depthwise_conv.defjvp(_depthwise_conv_jvp, symbolic_zeros=True)

#: Bytes of padded input and output gradient per batch chunk of :func:`kernel_gradient` (a core's L2).
CHUNK_BYTES = 1 << 20


def kernel_gradient(x, dy, kernel_shape, strides, pads, dilations):
    """``dF[u, c m + j] = sum_{n, p} Xpad[n, p S + u D, c] dY[n, p, c m + j]``, ``kernel_shape`` ``(*k, 1,
    C m)``: per-tap multiply-reduces, summed over batch chunks of at most ``CHUNK_BYTES``."""
    nd = x.ndim - 2
    x = _padded_input(x, kernel_shape, pads)
    taps = list(itertools.product(*[range(k) for k in kernel_shape[:nd]]))

    def chunk_gradient(x, dy):
        return jnp.stack([jnp.sum(x[_tap(u, dy.shape[1:-1], strides, dilations)] * dy, axis=tuple(range(nd + 1)))
                          for u in taps])

    n = x.shape[0]
    chunk = max(1, min(n, CHUNK_BYTES // ((x.size + dy.size) // n * x.dtype.itemsize)))
    while n % chunk:
        chunk -= 1
    if chunk == n:
        return chunk_gradient(x, dy).reshape(kernel_shape)
    chunks = x.reshape(n // chunk, chunk, *x.shape[1:]), dy.reshape(n // chunk, chunk, *dy.shape[1:])
    total, _ = lax.scan(lambda total, pair: (total + chunk_gradient(*pair), None),
                        jnp.zeros((len(taps), dy.shape[-1]), dy.dtype), chunks)
    return total.reshape(kernel_shape)


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
