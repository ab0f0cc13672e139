"""Grouped convolution (``1 < groups < C_in``) as ``groups`` dense convolutions of ``C_in / groups``
channels, concatenated.

XLA:CPU runs ``feature_group_count`` as one small GEMM per group and output pixel, and rewrites the kernel
gradient's ``batch_group_count`` into a dense convolution plus a mask; split into dense convolutions, every
part (forward, input gradient, kernel gradient) is XLA's fast dense path with exactly the useful work, at the
price of the channel slices and the concatenation. Each output is the reference's sum over the same terms
(NaN and Inf included).
"""

from __future__ import annotations

import jax.numpy as jnp

#: More groups than this and the per-group convolutions' overhead wins; the reference takes it.
MAX_GROUPS = 16


def applies(x_shape, kernel_shape, groups) -> bool:
    return 1 < groups <= MAX_GROUPS and kernel_shape[-2] > 1


def grouped_conv(x, kernel, dense_conv, groups):
    """``dense_conv(x_part, kernel_part)`` on each group's channels, concatenated along the channel axis."""
    c_in, c_out = x.shape[-1] // groups, kernel.shape[-1] // groups
    parts = [
        dense_conv(x[..., g * c_in : (g + 1) * c_in], kernel[..., g * c_out : (g + 1) * c_out])
        for g in range(groups)
    ]
    return jnp.concatenate(parts, axis=-1)
