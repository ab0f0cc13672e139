"""BatchNorm as a Flax module over :func:`cnnjax.ops.batch_statistics` / :func:`cnnjax.ops.batch_normalize`."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax.linen.dtypes import canonicalize_dtype

from cnnjax import ops


class BatchNorm(nn.Module):
    """flax's ``nn.BatchNorm`` over the last axis, with the same fields, variables (``params``: ``scale``,
    ``bias``; ``batch_stats``: ``mean``, ``var``), initial values and results: in training the batch's statistics
    normalize and update the running averages (``ra = momentum * ra + (1 - momentum) * batch``; not while
    initializing); with ``use_running_average`` the running averages normalize. The computation is the ops',
    so that on the CPU its per-channel sums take :mod:`cnnjax.ops.fast` (C++)."""

    use_running_average: bool | None = None
    momentum: float = 0.99
    epsilon: float = 1e-5
    dtype: Any = None
    param_dtype: Any = jnp.float32
    use_bias: bool = True
    use_scale: bool = True
    bias_init: Any = nn.initializers.zeros
    scale_init: Any = nn.initializers.ones

    @nn.compact
    def __call__(self, x, use_running_average: bool | None = None):
        use_running_average = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
        features = (x.shape[-1],)
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), features)
        ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), features)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            stats_dtype = jnp.promote_types(self.dtype or x.dtype, jnp.float32)
            mean, var = ops.batch_statistics(jnp.asarray(x, stats_dtype))
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        args = [x]
        scale = bias = None
        if self.use_scale:
            scale = self.param("scale", self.scale_init, features, self.param_dtype)
            args.append(scale)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, features, self.param_dtype)
            args.append(bias)
        y = ops.batch_normalize(x, mean, var, scale, bias, self.epsilon)
        return jnp.asarray(y, canonicalize_dtype(*args, dtype=self.dtype))
