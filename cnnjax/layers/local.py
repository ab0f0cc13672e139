"""Locally connected ("k-local") layer: a sliding window with unshared weights (seed 004)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax import ops
from cnnjax.layers.conv import Initializer, check_features, kernel_window, names_the_layer
from cnnjax.ops.args import as_tuple
from cnnjax.ops.padding import normalize_padding


def local_he_normal(key, shape, dtype=jnp.float32):
    """He normal for a locally connected kernel ``(*out, *k, C_in, C_out)``: fan-in ``prod(k) C_in``."""
    nd = (len(shape) - 2) // 2
    init = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal", batch_axis=tuple(range(nd)))
    return init(key, shape, dtype)


class LocallyConnected(nn.Module):
    """Locally connected layer: parameters ``kernel`` ``(*out_spatial, *k, C_in, features)`` and ``bias``
    ``(*out_spatial, features)``; the call is :func:`cnnjax.ops.locally_connected`.

    The output size (and so the parameter shapes) is fixed by the input size at ``init``.
    Parameters: ``prod(out) (C_in prod(k) + 1) features`` — seed 004's ``(k^2 + 1) m^2`` for one map.
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Any = "VALID"
    dilation: int | Sequence[int] = 1
    use_bias: bool = True
    pad_mode: str = "constant"
    kernel_init: Initializer = local_he_normal
    bias_init: Initializer = nn.initializers.zeros
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    @names_the_layer
    def __call__(self, x):
        nd = x.ndim - 2
        if nd < 1:
            raise ValueError(f"x.shape={x.shape} must be (N, *spatial, C) with at least one spatial axis")
        window = kernel_window(self.kernel_size, nd)
        features = check_features(self.features)
        strides = as_tuple(self.strides, nd, "strides")
        dilations = as_tuple(self.dilation, nd, "dilation")
        pads = normalize_padding(self.padding, window, dilations)
        out = tuple(
            ops.output_size(h, k, s, p, d) for h, k, s, p, d in zip(x.shape[1:-1], window, strides, pads, dilations)
        )
        c_in = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (*out, *window, c_in, features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (*out, features), self.param_dtype) if self.use_bias else None
        dtype = self.dtype or x.dtype
        return ops.locally_connected(
            x.astype(dtype),
            kernel.astype(dtype),
            None if bias is None else bias.astype(dtype),
            kernel_size=window,
            stride=strides,
            padding=pads,
            dilation=dilations,
            pad_mode=self.pad_mode,
        )
