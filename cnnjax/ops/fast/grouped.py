"""Grouped convolution (``1 < groups < C_in``) as dense convolutions: one per group, concatenated, or, for
few channels, one with a block-diagonal kernel.

XLA:CPU runs ``feature_group_count`` as one small GEMM per group and output pixel, and rewrites the kernel
gradient's ``batch_group_count`` into a dense convolution plus a mask. Split into dense convolutions, every
part (forward, input gradient, kernel gradient) is XLA's fast dense path with exactly the useful work, at the
price of the channel slices and the concatenation. Each output is the reference's sum over the same terms
(NaN and Inf included).

With few channels in all (``C_in <= 32``, ``<= 8`` per group: ResNet-20 ``conv=grouped:4``'s first two
stages) the slices, the concatenation and XLA's slow few-channel convs cost more than ``groups`` times the
products: there the grouped conv is one dense conv whose kernel is block-diagonal,
``F_dense[..., i, o] = F[..., i mod C_in/g, o]`` if input channel ``i`` and output channel ``o`` are in the
same group, else 0 (built by a select, so a NaN or Inf of the kernel stays in its block). A dense conv
multiplies every input channel by the zeros of the other groups' blocks, and ``0 * NaN = NaN``: for an input
that is not all finite, the value is the per-group formulation's (``lax.cond``), so the values are the
reference's. The derivatives are the dense conv's, which in reverse mode put NaN and Inf where the
reference does (the input gradient does not read the input; the kernel gradient keeps only the diagonal
blocks, whose products are the reference's); in forward mode, with a non-finite input, a kernel tangent
spreads it to the other groups' outputs. Under ``vmap`` the ``lax.cond`` becomes a select, which computes
both formulations.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

#: More groups than this and the per-group convolutions' overhead wins; the reference takes it.
MAX_GROUPS = 16
#: The block-diagonal dense conv serves inputs of at most this many channels ...
BLOCK_DIAGONAL_MAX_CHANNELS = 32
#: ... in groups of at most this many (one AVX2 vector of float32).
BLOCK_DIAGONAL_MAX_GROUP_CHANNELS = 8


def applies(x_shape, kernel_shape, groups) -> bool:
    return 1 < groups <= MAX_GROUPS and kernel_shape[-2] > 1


def block_diagonal_applies(x_shape, groups) -> bool:
    """Few channels: ``C_in <= BLOCK_DIAGONAL_MAX_CHANNELS``, ``C_in / groups <= BLOCK_DIAGONAL_MAX_GROUP_CHANNELS``."""
    return x_shape[-1] <= BLOCK_DIAGONAL_MAX_CHANNELS and x_shape[-1] // groups <= BLOCK_DIAGONAL_MAX_GROUP_CHANNELS


def grouped_conv(x, kernel, dense_conv, groups):
    """``dense_conv(x_part, kernel_part)`` on each group's channels, concatenated along the channel axis."""
    c_in, c_out = x.shape[-1] // groups, kernel.shape[-1] // groups
    parts = [
        dense_conv(x[..., g * c_in : (g + 1) * c_in], kernel[..., g * c_out : (g + 1) * c_out])
        for g in range(groups)
    ]
    return jnp.concatenate(parts, axis=-1)


def block_diagonal(kernel, groups):
    """The dense kernel ``(*k, C_in, C_out)`` of a grouped one ``(*k, C_in / g, C_out)``: block ``(s, s)`` holds
    group ``s``'s kernel, the other blocks zeros (a select: a NaN or Inf stays in its block)."""
    *window, c_group, c_out = kernel.shape
    tiled = jnp.broadcast_to(kernel.reshape(*window, 1, c_group, groups, c_out // groups),
                             (*window, groups, c_group, groups, c_out // groups))
    same_group = np.arange(groups)[:, None, None, None] == np.arange(groups)[None, None, :, None]
    return jnp.where(same_group, tiled, jnp.zeros((), kernel.dtype)).reshape(*window, groups * c_group, c_out)


def block_diagonal_conv(x, kernel, groups, dense_conv, per_group_conv):
    """``dense_conv(x, block_diagonal(kernel))``; where ``x`` is not all finite, ``per_group_conv(x, kernel)``."""
    return _value_of_finite_input(dense_conv(x, block_diagonal(kernel, groups)), x, kernel, per_group_conv)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _value_of_finite_input(y, x, kernel, per_group_conv):
    """``y`` if ``x`` is all finite, else ``per_group_conv(x, kernel)``; its tangent is ``y``'s (see the module
    docstring for what that means for a non-finite input)."""
    return lax.cond(jnp.all(jnp.isfinite(x)), lambda y, x, k: y, lambda y, x, k: per_group_conv(x, k), y, x, kernel)


@_value_of_finite_input.defjvp
def _value_of_finite_input_jvp(per_group_conv, primals, tangents):
    return _value_of_finite_input(*primals, per_group_conv), tangents[0]
