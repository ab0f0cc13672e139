"""Make a convolution's input a buffer of its own, so that its kernel gradient reads it once (also used for
the tiled max-pool's winner index, which its backward pass would otherwise recompute per pixel).

XLA:CPU computes a convolution's kernel gradient from a transposed copy of the input (batch axis last). It
fuses that transpose with the input's producers when they are cheap elementwise ops, and duplicates them:
in a ResNet the input of a block's conv is ``relu(bn(conv) + a(k))``, whose ``a(k)`` is again such a
chain, so the transposed copy recomputed the batch norms, ReLUs and additions of all earlier blocks of a
stage, reading four activation maps in transposed (cache-hostile) order: 270 of a 660 ms ResNet-20 step at
batch 128 on two cores went to these copies.

XLA does not duplicate an op it counts as expensive, and a floating division is one; dividing each element
by a 1.0 that XLA cannot fold (built from the element's bits: ``clz(bits) >> 6`` is 0 for every 32-bit
pattern, NaN and Inf included) ends every fusion at the division: the transpose then reads one
materialized buffer. ``x / 1.0`` is ``x`` with the same bits for every float but a NaN, which stays a NaN
(its payload may change: float8 divides in float32); the tangent and cotangent pass through unchanged (a
custom JVP: no division in the backward pass).
``lax.optimization_barrier`` would say this directly, but XLA:CPU removes barriers before fusion.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_UINT = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint64}


def _unfoldable_ones(x):
    """``1`` for every element of ``x`` (a float array), built from the element's own bits so that XLA can
    neither fold it nor turn the division into a multiplication by a reciprocal (as it does for a scalar)."""
    uint = _UINT[x.dtype.itemsize]
    bits = lax.bitcast_convert_type(x, uint)
    width = 8 * x.dtype.itemsize
    zero = lax.shift_right_logical(lax.clz(bits), uint(width.bit_length()))  # clz(bits) <= width
    one_bits = lax.bitcast_convert_type(jnp.ones((), x.dtype), uint)
    return lax.bitcast_convert_type(zero + one_bits, x.dtype)


@jax.custom_jvp
def materialized(x):
    """``x``, as a buffer that XLA:CPU will not recompute inside its consumers' fusions."""
    return x / _unfoldable_ones(x)


@materialized.defjvp
def _materialized_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return materialized(x), t
