"""Locally connected ("k-local") layer: a convolution without weight sharing (seed 004)."""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from cnnjax.ops.args import as_tuple, check_window_fits, floating_input
from cnnjax.ops.padding import check_pad_mode, normalize_padding, pad


def extract_patches(x, window, *, stride=1, padding="VALID", dilation=1, pad_mode: str = "constant"):
    """Sliding windows of ``x`` (the receptive fields of seed 004's k-local layer), by exact strided slicing.

    Args:
      x: ``(N, *spatial, C)``.
      window: int or one int per spatial axis.

    Returns:
      ``(N, *out_spatial, *window, C)`` with ``patches[n, p, u, c] = x_padded[n, p S + u D, c]``.
    """
    x = jnp.asarray(x)
    nd = x.ndim - 2
    if nd < 1:
        raise ValueError(f"x.shape={x.shape} must be (N, *spatial, C) with at least one spatial axis")
    window = as_tuple(window, nd, "kernel_size")
    strides = as_tuple(stride, nd, "stride")
    dilations = as_tuple(dilation, nd, "dilation")
    check_pad_mode(pad_mode)
    pads = normalize_padding(padding, window, dilations)
    check_window_fits(x.shape[1:-1], window, dilations, pads)
    if any(lo or hi for lo, hi in pads):
        x = pad(x, pads, mode=pad_mode)
    out = [(h - d * (k - 1) - 1) // s + 1 for h, k, s, d in zip(x.shape[1:-1], window, strides, dilations)]
    taps = []
    for offset in _product(window):
        start = (0, *(u * d for u, d in zip(offset, dilations)), 0)
        limit = (
            x.shape[0],
            *(u * d + (o - 1) * s + 1 for u, d, o, s in zip(offset, dilations, out, strides)),
            x.shape[-1],
        )
        taps.append(lax.slice(x, start, limit, (1, *strides, 1)))
    patches = jnp.stack(taps, axis=-2)  # (N, *out, prod(window), C)
    return patches.reshape(*patches.shape[:-2], *window, x.shape[-1])


def _product(window):
    if not window:
        yield ()
        return
    for u in range(window[0]):
        for rest in _product(window[1:]):
            yield (u, *rest)


def locally_connected(
    x,
    kernel,
    bias=None,
    *,
    kernel_size,
    stride=1,
    padding="VALID",
    dilation=1,
    pad_mode: str = "constant",
):
    """Locally connected layer: a sliding-window layer whose weights differ at every output position.

    Seed 004 (k-local layer, no weight sharing):
    ``Y[n, p, k] = sum_{u, m} X[n, p S + u D, m] W[p, u, m, k] + b[p, k]``. With the same kernel at every
    position ``p`` it is :func:`cnnjax.ops.conv`. Parameters ``prod(out) (M prod(k) + 1) K``: ``(k + 1) m``
    in 1-D and ``(k^2 + 1) m^2`` in 2-D for one input and one output map.

    Args:
      x: ``(N, *spatial, C_in)``.
      kernel: ``(*out_spatial, *k, C_in, C_out)``.
      bias: optional ``(*out_spatial, C_out)``.
      kernel_size: int or one int per spatial axis; must match ``kernel``.
      stride, padding, dilation, pad_mode: as in :func:`cnnjax.ops.conv`.

    Returns:
      ``(N, *out_spatial, C_out)``.
    """
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    nd = x.ndim - 2
    if nd < 1:
        raise ValueError(f"x.shape={x.shape} must be (N, *spatial, C) with at least one spatial axis")
    window = as_tuple(kernel_size, nd, "kernel_size")
    if kernel.ndim != 2 * nd + 2:
        raise ValueError(
            f"kernel.shape={kernel.shape} must have {2 * nd + 2} axes (*out_spatial, *k, C_in, C_out) "
            f"for x.shape={x.shape} with {nd} spatial axes"
        )
    if tuple(kernel.shape[nd : 2 * nd]) != window:
        raise ValueError(f"kernel.shape={kernel.shape} has window {kernel.shape[nd:2 * nd]} but kernel_size={window}")
    if kernel.shape[-2] != x.shape[-1]:
        raise ValueError(f"kernel.shape={kernel.shape} needs C_in={x.shape[-1]} on axis -2 (x.shape={x.shape})")
    strides = as_tuple(stride, nd, "stride")
    dilations = as_tuple(dilation, nd, "dilation")
    pads = normalize_padding(padding, window, dilations)
    check_window_fits(x.shape[1:-1], window, dilations, pads)
    out = tuple(
        (h + lo + hi - d * (k - 1) - 1) // s + 1
        for h, k, s, d, (lo, hi) in zip(x.shape[1:-1], window, strides, dilations, pads)
    )
    if tuple(kernel.shape[:nd]) != out:
        raise ValueError(
            f"kernel.shape={kernel.shape} must start with the output size {out} "
            f"(x.shape={x.shape}, kernel_size={window}, stride={strides}, padding={pads})"
        )
    c_out = kernel.shape[-1]
    if bias is not None:
        bias = jnp.asarray(bias)
        if bias.shape != (*out, c_out):
            raise ValueError(f"bias.shape={bias.shape} must be (*out_spatial, C_out)={(*out, c_out)}")
    x = floating_input(x, kernel)
    patches = extract_patches(x, window, stride=strides, padding=pads, dilation=dilations, pad_mode=pad_mode)
    n_tap = math.prod(window) * x.shape[-1]
    patches = patches.reshape(x.shape[0], *out, n_tap)
    weights = kernel.astype(x.dtype).reshape(*out, n_tap, c_out)
    y = jnp.einsum("n...t,...tk->n...k", patches, weights, precision=lax.Precision.HIGHEST)
    if bias is not None:
        y = y + bias.astype(y.dtype)
    return y
