"""Batch normalization's two halves, per channel (the last axis), as pure functions (Ioffe & Szegedy 2015):

    mean_c = (1/m) sum_r x[r, c]        var_c = max(0, (1/m) sum_r x[r, c]^2 - mean_c^2)
    y[r, c] = (x[r, c] - mean_c) * scale_c / sqrt(var_c + epsilon) + bias_c

over the ``m`` rows of every other axis (batch and spatial). These are flax's ``BatchNorm`` formulas (its fast
variance, statistics in float32), written with the same operations in the same order: the reference gives its
bits. On the CPU the per-channel sums take :mod:`cnnjax.ops.fast` (C++ loops, the backward pass's sums too).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from cnnjax.ops import fast


def _check_rows_and_channels(x):
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x.shape={x.shape} must be (N, ..., C): a batch axis and a channel axis at least")
    return x


def batch_statistics(x):
    """Per-channel ``(mean, var)`` of ``x`` over every axis but the last, in float32 (at least)."""
    x = _check_rows_and_channels(x)
    x = jnp.asarray(x, jnp.promote_types(x.dtype, jnp.float32))

    def reference(x):
        axes = tuple(range(x.ndim - 1))
        squares = lax.square(x)  # before the means, as flax: the same order of operations, the same bits
        mean = jnp.mean(x, axes)
        mean_of_squares = jnp.mean(squares, axes)
        return mean, jnp.maximum(0.0, mean_of_squares - lax.square(mean))

    return fast.batch_statistics(x, reference)


def batch_normalize(x, mean, var, scale=None, bias=None, epsilon: float = 1e-5):
    """``(x - mean) * scale / sqrt(var + epsilon) + bias`` with per-channel ``mean``, ``var``, ``scale``, ``bias``
    (shape ``(C,)``; ``scale`` / ``bias`` None: 1 / 0). The result has the promoted dtype of the operands."""
    x = _check_rows_and_channels(x)
    if not epsilon >= 0:
        raise ValueError(f"epsilon={epsilon} must be >= 0")
    per_channel = {"mean": mean, "var": var, "scale": scale, "bias": bias}
    for name, value in per_channel.items():
        if value is not None and jnp.shape(value) != (x.shape[-1],):
            raise ValueError(f"{name}.shape={jnp.shape(value)} must be (channels,)=({x.shape[-1]},)")
    mean, var, scale, bias = (None if v is None else jnp.asarray(v) for v in per_channel.values())

    def reference(x, mean, var, scale, bias):
        axes, shape = tuple(range(x.ndim - 1)), (1,) * (x.ndim - 1) + (x.shape[-1],)  # as flax shapes them
        mean, var = jnp.expand_dims(mean, axes), jnp.expand_dims(var, axes)
        y = x - mean
        mul = lax.rsqrt(var + epsilon)
        if scale is not None:
            mul = mul * scale.reshape(shape)
        y = y * mul
        return y if bias is None else y + bias.reshape(shape)

    return fast.batch_normalize(x, mean, var, scale, bias, epsilon, reference)
