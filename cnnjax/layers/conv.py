"""Flax modules that own convolution parameters and call the pure ops in :mod:`cnnjax.ops`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax import ops

Initializer = Any
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")


def kernel_window(kernel_size: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """``kernel_size`` as one int per spatial axis."""
    return (kernel_size,) * ndim if isinstance(kernel_size, int) else tuple(kernel_size)


class Conv(nn.Module):
    """Standard / grouped / dilated convolution layer: parameters ``kernel`` (*k, C_in/g, C_out), ``bias``.

    The number of spatial axes is taken from ``x.ndim - 2``; ``kernel_size`` may be an int.
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Any = "SAME"
    dilation: int | Sequence[int] = 1
    groups: int = 1
    use_bias: bool = True
    pad_mode: str = "constant"
    kernel_init: Initializer = he_normal
    bias_init: Initializer = nn.initializers.zeros
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        window = kernel_window(self.kernel_size, x.ndim - 2)
        c_in = x.shape[-1]
        if c_in % self.groups:
            raise ValueError(f"groups={self.groups} must divide in_channels={c_in}")
        kernel = self.param(
            "kernel", self.kernel_init, (*window, c_in // self.groups, self.features), self.param_dtype
        )
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        dtype = self.dtype or x.dtype
        return ops.conv(
            x.astype(dtype),
            kernel.astype(dtype),
            None if bias is None else bias.astype(dtype),
            stride=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            pad_mode=self.pad_mode,
        )
