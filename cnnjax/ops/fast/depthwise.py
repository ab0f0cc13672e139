"""Depthwise convolution (``groups = C_in``, one input channel per group) as ``prod(k)`` shifted-slice
multiply-adds.

``Y[n, p, c m + j] = sum_u Xpad[n, p S + u D, c] F[u, c, j]``, one strided slice of the padded input per
tap ``u``, multiplied by that tap's per-channel weights and summed: XLA:CPU fuses the sum into one
memory-bound loop (~35x faster than the reference's forward at (32, 28, 28, 64)). The reference
(``feature_group_count = C``) is XLA:CPU's slowest case.

Derivatives are automatic differentiation's: the input gradient is the transpose of the slices (one pad per
slice, fused into one loop: the depthwise conv of ``dY`` with the flipped kernel), the kernel gradient one
multiply-reduce per tap, ``dF[u, c m + j] = sum_{n, p} Xpad[n, p S + u D, c] dY[n, p, c m + j]``. The
reference's kernel gradient (``batch_group_count = C``, which XLA:CPU rewrites into a dense ``C x C``
convolution, ``C`` times the useful work) measured 40x slower at LeNet-5's shape (128, 14, 14, 6) with
multiplier 3 (150 vs 3.7 ms), 3.5x at (8, 14, 14, 256), 1.2x at (32, 28, 28, 64) (idle machine; README's
"Tried and dropped" lists the other formulations measured). A channel multiplier ``m > 1`` repeats the input channels once
(``c -> c m + j``) so that every array keeps one flat channel axis: broadcasting an ``(..., C, m)`` axis
pair instead made both gradients ~5x slower.

The terms are those of ``lax.conv_general_dilated`` (padded cells included), so NaN and Inf in the input
propagate the same way; only the order of the float32 sums differs.
"""

from __future__ import annotations

import functools
import itertools

import jax.numpy as jnp
import numpy as np
from jax import lax

#: More taps than this (e.g. a 9x9 blur) and the unrolled sum stops paying; the reference takes it.
MAX_TAPS = 49


def applies(x_shape, kernel_shape, groups) -> bool:
    """Depthwise: one input channel per group (any channel multiplier), at most ``MAX_TAPS`` taps."""
    nd = len(x_shape) - 2
    return groups > 1 and groups == x_shape[-1] and kernel_shape[-2] == 1 and np.prod(kernel_shape[:nd]) <= MAX_TAPS


def depthwise_conv(x, kernel, strides, pads, dilations):
    """``x`` ``(N, *spatial, C)``, ``kernel`` ``(*k, 1, C m)`` (conv's grouped layout) -> ``(N, *out, C m)``:
    one strided slice of the padded input per tap, times its weights, summed."""
    nd = x.ndim - 2
    window, channels = kernel.shape[:nd], x.shape[-1]
    multiplier = kernel.shape[-1] // channels
    x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *[(lo, hi, 0) for lo, hi in pads], (0, 0, 0)))
    out = [(size - d * (k - 1) - 1) // s + 1 for size, k, s, d in zip(x.shape[1:-1], window, strides, dilations)]
    weights = kernel.reshape(*window, channels * multiplier)
    if multiplier > 1:
        x = jnp.repeat(x, multiplier, axis=-1)  # channel c m + j sees input channel c

    def tap(u):
        index = [slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(u, dilations, out, strides)]
        return x[(slice(None), *index)] * weights[u]

    return functools.reduce(jnp.add, [tap(u) for u in itertools.product(*[range(k) for k in window])])
