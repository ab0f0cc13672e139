"""Deformable convolution layer (v1, Dai et al. 2017; modulated v2, Zhu et al. 2019), seed 004."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.layers.conv import Conv, he_normal, kernel_window, names_the_layer
from cnnjax.ops.args import check_groups
from cnnjax.ops.deform import deform_conv2d

Initializer = Any


class DeformConv(nn.Module):
    """Deformable convolution that learns its own sampling offsets (and, if ``modulated``, a mask).

    A regular :class:`cnnjax.layers.Conv` (sub-module ``offset_conv``: same window, strides, padding and
    dilation, so its output grid is the layer's output grid) predicts, for every output position, an
    offset ``(dy, dx)`` per kernel tap and offset group — and for v2 one modulation logit per tap and
    group — which :func:`cnnjax.ops.deform_conv2d` then uses::

        offsets = offset_conv(x)[..., :G*K*2]                 # (N, H_out, W_out, G*kh*kw*2)
        mask    = mask_scale * sigmoid(offset_conv(x)[..., G*K*2:])   # v2 only, (N, H_out, W_out, G*kh*kw)
        y       = deform_conv2d(x, offsets, kernel, bias, ..., mask=mask)

    ``offset_conv`` is initialised to zero (kernel and bias), as in the papers, so an untrained layer
    samples the regular grid: an untrained v1 layer IS the standard convolution with the same
    ``kernel``/``bias``. For v2 the paper's sigmoid gives a mask of 0.5 at initialisation; with the
    default ``mask_scale=2.0`` the mask starts at exactly 1, so an untrained v2 layer also equals the
    standard convolution (mask range (0, 2)). Set ``mask_scale=1.0`` for the paper's / mmcv's plain sigmoid
    (range (0, 1), untrained output = 0.5 x the pre-bias convolution), e.g. when importing their weights.

    Parameters: ``kernel`` (kh, kw, C_in / groups, features), ``bias`` (features,), and
    ``offset_conv/{kernel, bias}`` with ``G * kh * kw * (3 if modulated else 2)`` output channels.
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Any = "SAME"
    dilation: int | Sequence[int] = 1
    groups: int = 1
    offset_groups: int = 1
    modulated: bool = False
    use_bias: bool = True
    mask_scale: float = 2.0
    kernel_init: Initializer = he_normal
    bias_init: Initializer = nn.initializers.zeros
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    @names_the_layer
    def __call__(self, x):
        if x.ndim != 4:
            raise ValueError(f"x.shape={x.shape} must be (N, H, W, C_in) for DeformConv")
        window = kernel_window(self.kernel_size, 2)
        if len(window) != 2:
            raise ValueError(f"kernel_size={self.kernel_size!r} must be an int or a pair")
        c_in = x.shape[-1]
        check_groups(self.groups, c_in, self.features)
        if not isinstance(self.offset_groups, int) or self.offset_groups < 1 or c_in % self.offset_groups:
            raise ValueError(
                f"offset_groups={self.offset_groups!r} must be a positive int dividing in_channels={c_in}"
            )
        taps = window[0] * window[1] * self.offset_groups
        dtype = self.dtype or x.dtype
        pred = Conv(
            features=taps * (3 if self.modulated else 2),
            kernel_size=window,
            strides=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.zeros,
            dtype=dtype,
            param_dtype=self.param_dtype,
            name="offset_conv",
        )(x)
        offsets = pred[..., : taps * 2]
        mask = None
        if self.modulated:
            mask = self.mask_scale * jax.nn.sigmoid(pred[..., taps * 2 :])
        kernel = self.param(
            "kernel", self.kernel_init, (*window, c_in // self.groups, self.features), self.param_dtype
        )
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        return deform_conv2d(
            x.astype(dtype),
            offsets,
            kernel.astype(dtype),
            None if bias is None else bias.astype(dtype),
            stride=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            offset_groups=self.offset_groups,
            mask=mask,
        )

