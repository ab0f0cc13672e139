"""Transposed convolution without ``lhs_dilation``: the zero insertion made explicit (stride 1) or skipped
(stride > 1, one stride-1 conv per output phase).

The reference writes the zero insertion as ``lhs_dilation = S`` of ``lax.conv_general_dilated``. Its
kernel gradient is then a convolution whose "kernel" is the whole output-gradient map over an lhs-dilated
input, which XLA:CPU runs very slowly. :func:`insert_zeros` (``lax.pad`` with interior padding, then a
stride-1 convolution) gives the gradients of a stride-1 convolution plus the pad's transpose, a strided
slice; :func:`by_phases` computes no inserted zeros at all. Both have the reference's terms, NaN and Inf in
the input included (the explicit zeros meet every kernel tap where the reference skips the holes: a kernel
Inf gives NaN there, see :mod:`cnnjax.ops.fast`).
"""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
from jax import lax


def insert_zeros(x, strides, pads):
    """``S - 1`` zeros between neighbouring pixels and ``pads`` ``(lo, hi)`` zeros at the edges (negative:
    cropped) of each spatial axis of ``(N, *spatial, C)``."""
    config = ((0, 0, 0), *[(lo, hi, s - 1) for s, (lo, hi) in zip(strides, pads)], (0, 0, 0))
    return lax.pad(x, jnp.zeros((), x.dtype), config)


def by_phases(x, kernel, strides, pads, dilations, conv):
    """The same transposed conv as ``conv(insert_zeros(x, strides, pads), kernel, dilations)`` (``conv``: a
    stride-1 unpadded conv), without the zeros: the output cells ``q = S a + rho`` of one phase ``rho`` (per
    axis) see only the taps ``t`` with ``q + t D - lo = 0 (mod S)``, so each phase is a stride-1 conv of
    ``x`` itself with those taps (a sub-kernel ``kernel[t0::S / g]``, dilation ``D / g``, ``g = gcd(S, D)``),
    and the phases are interleaved (depth to space). ``prod(S)`` convs with ``prod(k)`` taps in all instead
    of one over an input ``prod(S)`` times larger, and their gradients stride-1 convs of the same sizes."""
    nd = x.ndim - 2
    window = kernel.shape[:nd]
    sizes = [(h - 1) * s + 1 + lo + hi - d * (k - 1)
             for h, s, (lo, hi), d, k in zip(x.shape[1:-1], strides, pads, dilations, window)]
    per_phase = [-(-q // s) for q, s in zip(sizes, strides)]  # the longest phase's length, ceil(Q / S)
    axes = [[_axis_phase(rho, h, k, s, lo, d, -(-(q - rho) // s)) for rho in range(s)]
            for h, k, s, (lo, _), d, q in zip(x.shape[1:-1], window, strides, pads, dilations, sizes)]
    c_out = kernel.shape[-1]
    phases = []
    for combination in itertools.product(*axes):
        counts = [count for _, _, _, count in combination]
        if any(taps is None for taps, _, _, _ in combination):  # no tap reaches these cells: zeros
            phase = jnp.zeros((x.shape[0], *counts, c_out), x.dtype)
        else:
            sub_kernel = kernel[tuple(taps for taps, _, _, _ in combination)]
            pad = ((0, 0, 0), *[pad for _, pad, _, _ in combination], (0, 0, 0))
            phase = conv(lax.pad(x, jnp.zeros((), x.dtype), pad), sub_kernel, tuple(d for _, _, d, _ in combination))
        # shorter phases end with zeros (a pad: its transpose is a slice, no product with the input)
        ends = [(0, a - count, 0) for a, count in zip(per_phase, counts)]
        phases.append(lax.pad(phase, jnp.zeros((), x.dtype), ((0, 0, 0), *ends, (0, 0, 0))))
    y = jnp.stack(phases, axis=1).reshape(x.shape[0], *strides, *per_phase, c_out)
    y = jnp.transpose(y, (0, *[i for axis in range(nd) for i in (1 + nd + axis, 1 + axis)], 2 * nd + 1))
    y = y.reshape(x.shape[0], *[a * s for a, s in zip(per_phase, strides)], c_out)
    return y[(slice(None), *[slice(0, q) for q in sizes])]


def _axis_phase(rho, h, k, s, lo, d, count):
    """One axis of phase ``rho`` (``count`` output cells): (the taps' slice of the kernel, the (lo, hi, 0) pad
    of ``x`` that gives ``count`` outputs, the sub-kernel's dilation, ``count``); the first three None when no
    tap reaches the phase or it has no cells.

    Output ``q = S a + rho`` sees ``x[(q + t D - lo) / S]`` for the taps with ``(rho - lo + t D) = 0 mod S``;
    with ``rho - lo = S c + r`` these are ``t = t0 + j S / g`` and read ``x[a + e + j D / g]``,
    ``e = c + (r + t0 D) / S``."""
    g = math.gcd(s, d)
    c, r = divmod(rho - lo, s)
    first = [t for t in range(min(k, s // g)) if (r + t * d) % s == 0]
    if not first or count < 1:
        return None, None, None, max(count, 0)
    t0, step, sub_dilation = first[0], s // g, d // g
    taps = len(range(t0, k, step))
    e = c + (r + t0 * d) // s
    needed = count + sub_dilation * (taps - 1)  # x cells e .. e + needed - 1
    return slice(t0, k, step), (-e, e + needed - h, 0), sub_dilation, count
