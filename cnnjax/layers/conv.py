"""Flax modules that own convolution parameters and call the pure ops in :mod:`cnnjax.ops`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from cnnjax import ops
from cnnjax.ops.args import as_tuple, check_groups, check_positive_int

Initializer = Any
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")


def kernel_window(kernel_size: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """``kernel_size`` as one int per spatial axis (validated: positive ints, one per axis)."""
    return as_tuple(kernel_size, ndim, "kernel_size")


def check_features(features, name: str = "features") -> int:
    """A positive int number of output channels."""
    return check_positive_int(features, name)


#: Fields that tell the variants of a layer class apart; error messages show those not at their default.
_VARIANT_FIELDS = ("groups", "dilation", "depth_multiplier", "modulated", "offset_groups")


def layer_label(module: nn.Module, x=None) -> str:
    """``layer 'conv2' (Conv groups=4; in_channels=6, features=16)``: the module's path in its model, its
    class, its variant fields (those not at their default) and, for a layer with ``features``, its channels."""
    path = "/".join(module.scope.path) if module.scope is not None and module.scope.path else module.name
    fields = getattr(module, "__dataclass_fields__", {})
    parts = [type(module).__name__]
    parts += [
        f"{f}={getattr(module, f)!r}" for f in _VARIANT_FIELDS if f in fields and getattr(module, f) != fields[f].default
    ]
    label = " ".join(parts)
    if getattr(module, "features", None) is not None and getattr(x, "ndim", 0) >= 2:
        label += f"; in_channels={x.shape[-1]}, features={module.features}"
    return f"{f'layer {path!r}' if path else 'layer'} ({label})"


def names_the_layer(call):
    """Decorate a layer's ``__call__``: a ValueError raised while it is initialised or applied (a variant
    that does not fit the layer's channels, a window larger than its input, ...) is re-raised with the
    layer's path, class, variant and channels in front (:func:`layer_label`), e.g.
    ``layer 'conv2' (Conv groups=4; in_channels=6, features=16): groups=4 must divide in_channels=6``.
    A message that already names a (nested) layer is left as it is.
    """

    @functools.wraps(call)
    def wrapped(self, x, *args, **kwargs):
        try:
            return call(self, x, *args, **kwargs)
        except ValueError as err:
            if str(err).startswith("layer "):
                raise
            raise ValueError(f"{layer_label(self, x)}: {err}").with_traceback(err.__traceback__) from None

    return wrapped


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
    @names_the_layer
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


def filters_he_normal(key, shape, dtype=jnp.float32):
    """He normal for one-channel filters ``(*k, K)``: fan-in ``prod(k)``."""
    return _reshaped_init(he_normal, lambda s: (*s[:-1], 1, s[-1]))(key, shape, dtype)


def depthwise_slots(in_channels: int, features: int) -> tuple[np.ndarray, int]:
    """Where each of ``K = features`` one-channel filters sits in a depthwise conv of multiplier
    ``d = ceil(K / C)``: filter ``k`` sees input channel ``m = floor(k C / K)`` and is output ``m d + j``
    (``j``: its rank among the filters of channel ``m``). Returns ``(slots, d)``; ``slots = arange(K)``
    when ``C`` divides ``K``."""
    k = np.arange(features)
    source = k * in_channels // features  # non-decreasing: the filters of one channel are contiguous
    multiplier = -(-features // in_channels)
    return source * multiplier + k - np.searchsorted(source, source), multiplier


class DepthwiseConv(nn.Module):
    """Depthwise (channel-wise) convolution layer (seed 004): every filter sees one input channel.

    Two ways to size it:

    - ``features=None`` (default): ``C * depth_multiplier`` outputs, parameters ``kernel``
      ``(*k, C, depth_multiplier)`` (TensorFlow's layout) and ``bias`` ``(C * depth_multiplier,)``.
    - ``features=K`` (the "depthwise" conv variant, a drop-in for a ``C -> K`` convolution, ``K >= C``):
      parameters ``kernel`` ``(*k, K)`` and ``bias`` ``(K,)``, ``(prod(k) + 1) K`` in all; filter ``k`` sees
      input channel ``floor(k C / K)``, so the filters are spread over the channels as evenly as possible.
      When ``C`` divides ``K`` this is exactly the multiplier ``K / C`` form (filter ``m d + j`` = ``kernel[..., m, j]``).

    The call is :func:`cnnjax.ops.depthwise_conv` (for ``K`` not a multiple of ``C``: with multiplier
    ``ceil(K / C)``, the unused filters fixed at zero and their outputs dropped). He init, fan-in ``prod(k)``.
    """

    kernel_size: int | Sequence[int] = 3
    depth_multiplier: int = 1
    features: int | None = None
    strides: int | Sequence[int] = 1
    padding: Any = "SAME"
    dilation: int | Sequence[int] = 1
    use_bias: bool = True
    pad_mode: str = "constant"
    kernel_init: Initializer | None = None  # None: He normal with fan-in prod(k), for either layout
    bias_init: Initializer = nn.initializers.zeros
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    @names_the_layer
    def __call__(self, x):
        window = kernel_window(self.kernel_size, x.ndim - 2)
        c = x.shape[-1]
        dtype = self.dtype or x.dtype
        op = functools.partial(
            ops.depthwise_conv, stride=self.strides, padding=self.padding, dilation=self.dilation, pad_mode=self.pad_mode
        )
        if self.features is None:
            d = check_features(self.depth_multiplier, "depth_multiplier")
            kernel = self.param("kernel", self.kernel_init or depthwise_he_normal, (*window, c, d), self.param_dtype)
            bias = self.param("bias", self.bias_init, (c * d,), self.param_dtype) if self.use_bias else None
            return op(*_cast(dtype, x, kernel, bias))
        features = check_features(self.features)
        if self.depth_multiplier != 1:
            raise ValueError(f"depth_multiplier={self.depth_multiplier!r} must be 1 when features={features} is given")
        if features < c:
            raise ValueError(
                f"features={features} must be >= in_channels={c} (a depthwise filter sees one input channel, "
                "and every channel needs one)"
            )
        kernel = self.param("kernel", self.kernel_init or filters_he_normal, (*window, features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (features,), self.param_dtype) if self.use_bias else None
        x, kernel, bias = _cast(dtype, x, kernel, bias)
        slots, d = depthwise_slots(c, features)
        if features == c * d:
            y = op(x, kernel.reshape(*window, c, d), bias)
        else:
            dense = jnp.zeros((*window, c * d), kernel.dtype).at[..., slots].set(kernel)
            y = op(x, dense.reshape(*window, c, d))[..., slots]
            if bias is not None:
                y = y + bias
        return y


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
    @names_the_layer
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
    @names_the_layer
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
