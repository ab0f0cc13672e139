"""Transposed convolution with its zero insertion made explicit: ``lax.pad`` with interior padding, then a
stride-1 convolution.

The reference writes the zero insertion as ``lhs_dilation = S`` of ``lax.conv_general_dilated``. Its
kernel gradient is then a convolution whose "kernel" is the whole output-gradient map over an lhs-dilated
input, which XLA:CPU runs very slowly. With the zeros inserted by ``lax.pad`` the gradients are those of a
stride-1 convolution (a backward-filter and a backward-input convolution) plus the pad's transpose, a
strided slice. The padded input has the same values as the reference's dilated one, so the result has the
same terms, NaN and Inf in the input included (the explicit zeros meet every kernel tap where the reference
skips the holes: a kernel Inf gives NaN there, see :mod:`cnnjax.ops.fast`).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax


def insert_zeros(x, strides, pads):
    """``S - 1`` zeros between neighbouring pixels and ``pads`` ``(lo, hi)`` zeros at the edges (negative:
    cropped) of each spatial axis of ``(N, *spatial, C)``."""
    config = ((0, 0, 0), *[(lo, hi, s - 1) for s, (lo, hi) in zip(strides, pads)], (0, 0, 0))
    return lax.pad(x, jnp.zeros((), x.dtype), config)
