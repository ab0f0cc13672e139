"""Stride-1 dense convolution with few input channels as one banded (block-Toeplitz) GEMM.

XLA:CPU's direct convolution is slow when the input has fewer channels than one AVX2 vector of float32:
LeNet-5's first layer (one channel, 5x5) took half its train step, and the input gradient of its second
(6 -> 16 channels) was ~3x slower than this formulation. See ``benchmarks/run.py``.

Special values: the GEMM multiplies every pixel under a band by every column of ``T``, most of them exact
zeros, so a NaN or Inf pixel would reach the whole band (``0 * NaN = NaN``: 18 NaN outputs instead of 9 for
one NaN pixel under a 3x3 kernel). For an input that is not all finite the forward and the kernel-gradient
term take the reference convolution (``lax.cond``), so the values are those of ``lax.conv_general_dilated``
(``T`` is built by a select, never as ``0 * F``, so a kernel's Inf stays on its band). Only the banded GEMM
runs inside the ``lax.cond``: a convolution there would run several times slower on XLA:CPU. The input-gradient term (reverse mode: ``dY T^T``) is not guarded: a
non-finite *cotangent* spreads over the band of its output column (a NaN loss makes every gradient NaN on
either path).
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from cnnjax.ops.arithmetic import output_size

#: Below this many input channels (one AVX2 vector of float32) a stride-1 dense conv uses the banded GEMM.
FEW_INPUT_CHANNELS = 8
#: ... as long as the gathered rows' index (pixels of ``R``) stays small.
MAX_GATHER_INDEX = 1 << 22


class Bands(NamedTuple):
    """Where the banded GEMM's rows come from: output columns per band ``bw``, ``bands`` of them, ``span``
    input columns under one band, ``extra`` zero columns padded on the right so the last band fits."""

    out: list[int]
    bw: int
    bands: int
    span: int
    extra: int


def bands(padded_spatial, window, dilations) -> Bands:
    """Band geometry along the last spatial axis. Output columns per band: the smallest divisor of the
    output width in ``[k, 2k]`` (LeNet-5's 28 -> 7), else ``min(k, width)``. Wider bands waste multiplies on
    the band's zeros (``(bw + D (k - 1)) / k`` times the direct conv's), narrower ones make more, shorter
    row copies."""
    out = [output_size(size, k, 1, 0, d) for size, k, d in zip(padded_spatial, window, dilations)]
    k, d = window[-1], dilations[-1]
    bw = next((bw for bw in range(k, 2 * k + 1) if out[-1] % bw == 0), min(k, out[-1]))
    n_bands = -(-out[-1] // bw)
    span = bw + d * (k - 1)
    return Bands(out, bw, n_bands, span, max(0, (n_bands - 1) * bw + span - padded_spatial[-1]))


def applies(x_shape, kernel_shape, strides, pads, dilations, groups) -> bool:
    """The banded GEMM serves stride-1 dense convs with fewer than ``FEW_INPUT_CHANNELS`` input channels
    whose gathered-row index stays under ``MAX_GATHER_INDEX``."""
    nd = len(x_shape) - 2
    if groups != 1 or any(s != 1 for s in strides) or x_shape[-1] >= FEW_INPUT_CHANNELS:
        return False
    padded = [size + lo + hi for size, (lo, hi) in zip(x_shape[1:-1], pads)]
    b = bands(padded, kernel_shape[:nd], dilations)
    rows = x_shape[0] * int(np.prod(b.out[:-1])) * b.bands
    return rows * int(np.prod(kernel_shape[: nd - 1])) * b.span <= MAX_GATHER_INDEX


def _all_finite(x):
    return jnp.all(jnp.isfinite(x))


def _forward(x, kernel, pads, dilations, reference):
    """One input channel: the banded GEMM (the reference conv if ``x`` has a NaN or Inf); otherwise the
    reference conv."""
    if x.shape[-1] != 1:
        return reference(x, kernel)
    return lax.cond(_all_finite(x), lambda x, k: banded_gemm(x, k, pads, dilations), reference, x, kernel)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def conv_few_input_channels(x, kernel, pads, dilations, reference):
    """Stride-1 conv for few input channels, formulated for XLA:CPU; ``reference(x, kernel)`` is the same
    conv as ``lax.conv_general_dilated`` (same values, special values included, see the module docstring)."""
    return _forward(x, kernel, pads, dilations, reference)


def _conv_few_input_channels_jvp(pads, dilations, reference, primals, tangents):
    """``dY = conv(X, dF) + conv(dX, F)``. The second term is the banded GEMM with its rows gathered from
    ``dX``: reverse mode transposes it into ``dY T^T`` scattered back to the pixels (seed 001's full
    convolution with the rotated kernel, as col2im). The first, transposed, is the kernel gradient (seed
    001's correlation of the input with the output gradient): for one input channel ``dT = R^T dY`` summed
    along the band's diagonals back onto the taps, the reference's backward-filter convolution otherwise."""
    (x, kernel), (dx, dkernel) = primals, tangents
    y = _forward(x, kernel, pads, dilations, reference)
    terms = []
    if not isinstance(dkernel, SymbolicZero):
        terms.append(_forward(x, dkernel, pads, dilations, reference))
    if not isinstance(dx, SymbolicZero):
        terms.append(banded_gemm(dx, kernel, pads, dilations, gather=True))
    return y, functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)


conv_few_input_channels.defjvp(_conv_few_input_channels_jvp, symbolic_zeros=True)


def _taps(window):
    return list(itertools.product(*[range(k) for k in window]))


def banded_gemm(x, kernel, pads, dilations, gather: bool = False):
    """Stride-1 conv as one GEMM ``R T`` with a banded (block-Toeplitz) kernel matrix along the last spatial
    axis. A row of ``R`` holds, for one band of ``bw`` output columns, its ``span = bw + D (k - 1)`` input
    pixels (all channels) under every tap of the other axes; ``T[(u, c, m), (q, j)] = F[u, v, m, j]`` where
    ``c = q + v D`` for a kernel column ``v``, else 0. The output comes out channels-last.

    ``R`` is built from slices of the input (LeNet-5's first layer: 4 bands x 5 rows of 11 pixels per output
    row instead of one slice per tap), or with ``gather=True`` by one gather of whole pixels with a constant
    index, whose transpose is one scatter-add: the input gradient as ``dY T^T`` put back as col2im (the
    slices' transpose is a padded copy of ``dR`` per slice)."""
    nd = x.ndim - 2
    window, c_out = kernel.shape[:nd], kernel.shape[-1]
    if any(lo or hi for lo, hi in pads):
        x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    b = bands(x.shape[1:-1], window, dilations)
    if b.extra:
        x = jnp.pad(x, ((0, 0),) * nd + ((0, b.extra), (0, 0)))
    outer = _taps(window[:-1])
    if gather:
        shape = x.shape[:-1]  # (N, *padded spatial)
        pixels = np.arange(np.prod(shape)).reshape(shape)
        corners = pixels[(slice(None), *[slice(0, o) for o in b.out[:-1]], slice(0, b.bands * b.bw, b.bw))]
        pixel_strides = np.cumprod((1, *shape[:0:-1]))[::-1][1:]  # pixels between neighbours along each axis
        offsets = np.add.outer(
            [sum(u * d * st for u, d, st in zip(taps, dilations, pixel_strides)) for taps in outer],
            np.arange(b.span) * pixel_strides[-1],
        )
        index = jnp.asarray(np.add.outer(corners.ravel(), offsets.ravel()).astype(np.int32).ravel())
        rows = x.reshape(-1, x.shape[-1]).at[index].get(mode="promise_in_bounds")
    else:
        rows = jnp.stack([
            jnp.stack([
                x[(slice(None), *[slice(u * d, u * d + o) for u, d, o in zip(taps, dilations, b.out)],
                   slice(band * b.bw, band * b.bw + b.span))]
                for taps in outer
            ], axis=nd)
            for band in range(b.bands)
        ], axis=nd)  # (N, *out[:-1], bands, outer taps, span, C_in)
    k, d = window[-1], dilations[-1]
    # on_band[v, c, q]: input column c of a band is tap v of its output column q
    on_band = np.arange(b.span)[None, :, None] - np.arange(b.bw)[None, None, :] == d * np.arange(k)[:, None, None]
    # T by selection, not by multiplying with 0/1: an Inf or NaN tap stays on its band (0 * Inf = NaN)
    taps = kernel[..., :, None, :, None, :]  # (*outer, v, 1, m, 1, j)
    mask = on_band[:, :, None, :, None]  # (v, c, 1, q, 1)
    t = jnp.sum(jnp.where(mask, taps, jnp.zeros((), kernel.dtype)), axis=nd - 1)  # (*outer, c, m, q, j)
    t = t.reshape(-1, b.bw * c_out)  # rows (outer taps, span, C_in), as R's
    y = jnp.dot(rows.reshape(-1, t.shape[0]), t, precision=lax.Precision.HIGHEST)
    y = y.reshape(x.shape[0], *b.out[:-1], b.bands * b.bw, c_out)
    return y[..., : b.out[-1], :] if b.bands * b.bw != b.out[-1] else y
