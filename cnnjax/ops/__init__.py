"""Pure jax.numpy operations: convolution variants, padding, pooling, batch normalization, kernels, conv arithmetic."""

from cnnjax.ops import arithmetic, kernels
from cnnjax.ops.arithmetic import output_size, receptive_field
from cnnjax.ops.conv import conv
from cnnjax.ops.deform import deform_conv2d
from cnnjax.ops.kernels import filter_image
from cnnjax.ops.local import extract_patches, locally_connected
from cnnjax.ops.normalization import batch_normalize, batch_statistics
from cnnjax.ops.padding import normalize_padding, pad
from cnnjax.ops.pooling import avg_pool, global_avg_pool, global_max_pool, max_pool, sum_pool
from cnnjax.ops.separable import depthwise_conv, separable_conv
from cnnjax.ops.transpose import conv_transpose

__all__ = ["conv", "normalize_padding", "pad"]
__all__ += ["max_pool", "sum_pool", "avg_pool", "global_avg_pool", "global_max_pool"]
__all__ += [
    "arithmetic",
    "kernels",
    "output_size",
    "receptive_field",
    "filter_image",
    "extract_patches",
    "locally_connected",
    "depthwise_conv",
    "separable_conv",
    "conv_transpose",
]
__all__ += ["deform_conv2d", "batch_statistics", "batch_normalize"]
