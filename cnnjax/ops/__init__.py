"""Pure jax.numpy operations: convolution variants, padding, pooling, kernels, conv arithmetic."""

from cnnjax.ops.conv import conv
from cnnjax.ops.padding import normalize_padding, pad

__all__ = ["conv", "normalize_padding", "pad"]
from cnnjax.ops.pooling import max_pool, sum_pool

__all__ += ["max_pool", "sum_pool"]
