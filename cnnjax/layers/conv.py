"""Flax modules that own convolution parameters and call the pure ops in :mod:`cnnjax.ops`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax import ops
from cnnjax.ops.conv import as_tuple, check_positive_int

Initializer = Any
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")


def kernel_window(kernel_size: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """``kernel_size`` as one int per spatial axis (validated: positive ints, one per axis)."""
    return as_tuple(kernel_size, ndim, "kernel_size")


def check_features(features, name: str = "features") -> int:
    """A positive int number of output channels."""
    return check_positive_int(features, name)


def check_groups(groups, c_in: int, features: int) -> int:
    """``groups`` must be a positive int dividing both the input channels and ``features``."""
    groups = check_positive_int(groups, "groups")
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide in_channels={c_in}")
    if features % groups:
        raise ValueError(f"groups={groups} must divide features={features} (the output channels)")
    return groups


def _reshaped_init(init: Initializer, as_shape):
    """An initializer that draws ``as_shape(shape)`` with ``init`` (so its fan-in is right) and reshapes."""

    def wrapped(key, shape, dtype=jnp.float32):
        return init(key, as_shape(tuple(shape)), dtype).reshape(shape)

    return wrapped


def depthwise_he_normal(key, shape, dtype=jnp.float32):
    """He normal for a depthwise kernel ``(*k, C, d)``: fan-in ``prod(k)`` (each filter sees one channel)."""
    return _reshaped_init(he_normal, lambda s: (*s[:-2], 1, s[-2] * s[-1]))(key, shape, dtype)


def transpose_he_normal(key, shape, dtype=jnp.float32):
    """He normal for a transposed-conv kernel ``(*k, C_out/g, C_in)``: fan-in ``prod(k) C_in`` (as Flax)."""
    init = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal", in_axis=-1, out_axis=-2)
    return init(key, shape, dtype)


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
        check_features(self.features)
        check_groups(self.groups, c_in, self.features)
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


def _cast(dtype, *arrays):
    return [None if a is None else a.astype(dtype) for a in arrays]


class DepthwiseConv(nn.Module):
    """Depthwise (channel-wise) convolution layer (seed 004): groups = channels.

    Parameters ``kernel`` ``(*k, C, depth_multiplier)`` and ``bias`` ``(C * depth_multiplier,)``; the call is
    :func:`cnnjax.ops.depthwise_conv`. He init with fan-in ``prod(k)``.
    """

    kernel_size: int | Sequence[int] = 3
    depth_multiplier: int = 1
    strides: int | Sequence[int] = 1
    padding: Any = "SAME"
    dilation: int | Sequence[int] = 1
    use_bias: bool = True
    pad_mode: str = "constant"
    kernel_init: Initializer = depthwise_he_normal
    bias_init: Initializer = nn.initializers.zeros
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        window = kernel_window(self.kernel_size, x.ndim - 2)
        c = x.shape[-1]
        d = check_features(self.depth_multiplier, "depth_multiplier")
        kernel = self.param("kernel", self.kernel_init, (*window, c, d), self.param_dtype)
        bias = self.param("bias", self.bias_init, (c * d,), self.param_dtype) if self.use_bias else None
        dtype = self.dtype or x.dtype
        x, kernel, bias = _cast(dtype, x, kernel, bias)
        return ops.depthwise_conv(
            x, kernel, bias, stride=self.strides, padding=self.padding, dilation=self.dilation, pad_mode=self.pad_mode
        )


class SeparableConv(nn.Module):
    """Depthwise-separable convolution layer (seed 004): depthwise ``k x k`` then pointwise ``1 x 1``.

    Parameters ``depthwise_kernel`` ``(*k, C, depth_multiplier)``, ``pointwise_kernel``
    ``(C * depth_multiplier, features)`` and ``bias`` ``(features,)`` (pointwise only, as Keras'
    ``SeparableConv2D``); the call is :func:`cnnjax.ops.separable_conv`.
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Any = "SAME"
    dilation: int | Sequence[int] = 1
    depth_multiplier: int = 1
    use_bias: bool = True
    pad_mode: str = "constant"
    depthwise_init: Initializer = depthwise_he_normal
    pointwise_init: Initializer = he_normal
    bias_init: Initializer = nn.initializers.zeros
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        window = kernel_window(self.kernel_size, x.ndim - 2)
        c = x.shape[-1]
        k = check_features(self.features)
        d = check_features(self.depth_multiplier, "depth_multiplier")
        dw = self.param("depthwise_kernel", self.depthwise_init, (*window, c, d), self.param_dtype)
        pw = self.param("pointwise_kernel", self.pointwise_init, (c * d, k), self.param_dtype)
        bias = self.param("bias", self.bias_init, (k,), self.param_dtype) if self.use_bias else None
        dtype = self.dtype or x.dtype
        x, dw, pw, bias = _cast(dtype, x, dw, pw, bias)
        return ops.separable_conv(
            x, dw, pw, bias, stride=self.strides, padding=self.padding, dilation=self.dilation, pad_mode=self.pad_mode
        )


class ConvTranspose(nn.Module):
    """Transposed convolution layer (seed 004), PyTorch ``ConvTranspose`` convention.

    Parameters ``kernel`` ``(*k, features / groups, C_in)`` (the layout of the convolution being transposed)
    and ``bias`` ``(features,)``; the call is :func:`cnnjax.ops.conv_transpose`. Output size
    ``(H - 1) S - 2 P + D (M - 1) + output_padding + 1``.
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: int | Sequence[int] = 0
    output_padding: int | Sequence[int] = 0
    dilation: int | Sequence[int] = 1
    groups: int = 1
    use_bias: bool = True
    kernel_init: Initializer = transpose_he_normal
    bias_init: Initializer = nn.initializers.zeros
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        window = kernel_window(self.kernel_size, x.ndim - 2)
        c_in = x.shape[-1]
        features = check_features(self.features)
        groups = check_groups(self.groups, c_in, features)
        kernel = self.param("kernel", self.kernel_init, (*window, features // groups, c_in), self.param_dtype)
        bias = self.param("bias", self.bias_init, (features,), self.param_dtype) if self.use_bias else None
        dtype = self.dtype or x.dtype
        x, kernel, bias = _cast(dtype, x, kernel, bias)
        return ops.conv_transpose(
            x,
            kernel,
            bias,
            stride=self.strides,
            padding=self.padding,
            output_padding=self.output_padding,
            dilation=self.dilation,
            groups=groups,
        )
