"""Deformable convolution, v1 (Dai et al. 2017) and modulated v2 (Zhu et al. 2019), seed 004.

Each kernel tap ``(i, j)`` of each output position gets its own learned offset ``(dy, dx)``; the input
is read there by bilinear interpolation (zero outside the image), optionally multiplied by a modulation
scalar (v2), and the samples are contracted with the kernel as in an ordinary convolution.

Implementation (one XLA graph, no Python loops over data):

* layout: ``x`` is zero-padded and rearranged once into a "quad" array whose row ``(n, a, b, og)`` holds
  the four bilinear corners of cell ``(a, b)`` (``4 * C_in / G`` contiguous values), so each sample reads
  its four corners with ONE row gather, and corners outside the image read the zero border;
* forward: per kernel tap (and offset group) one fused gather + bilinear weighted sum gives that tap's
  ``(rows, C_in)`` block of the im2col matrix, contracted with the kernel slice by one matmul;
* backward (``jax.custom_vjp``): per tap the corners are re-gathered, ``d_cols = g @ kernel^T`` and
  ``d_kernel = cols^T @ g`` are matmuls, the offset and mask gradients are closed-form dot products of
  ``d_cols`` with the corner values, and ``d_x`` is ONE scatter-add of the weighted ``d_cols`` rows into
  the quad array (folded back onto the pixels at the end). Autodiff through four separate gathers
  instead emits four scatter-adds plus the derivative graph of the index arithmetic;
* memory: the output rows ``N * H_out * W_out`` are processed in chunks (``lax.map`` / ``lax.scan``)
  of about ``_CHUNK_BYTES`` of intermediates, whatever the batch.

Forward-mode differentiation (``jax.jvp``) is not available through the custom VJP; reverse mode of
any order is (the backward pass is itself made of differentiable ops).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from cnnjax.ops.args import as_tuple, check_bias, check_groups, check_positive_int, check_window_fits, floating_input
from cnnjax.ops.arithmetic import output_size
from cnnjax.ops.padding import normalize_padding

# Budget for the per-chunk intermediates (about ``8 * C_in + 16 * K * G`` values per output row). 64 MiB keeps
# a (64, 56, 56, 256) 3x3 layer far below 8 GB (27 chunks) and the benchmark shapes in one chunk.
_CHUNK_BYTES = 64 * 2**20


class _Config(NamedTuple):
    """Static description of one deformable convolution (hashable: it is a custom_vjp nondiff arg)."""

    n: int
    h: int
    w: int
    c_in: int
    c_out: int
    kh: int
    kw: int
    stride: tuple[int, int]
    pad_lo: tuple[int, int]
    dilation: tuple[int, int]
    h_out: int
    w_out: int
    groups: int
    offset_groups: int
    chunk: int


def deform_conv2d(
    x,
    offsets,
    kernel,
    bias=None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    offset_groups: int = 1,
    mask=None,
    chunk_size: int | None = None,
):
    """2-D deformable convolution (v1), or modulated deformable convolution (v2) when ``mask`` is given.

    Seed 004 (Dai et al. 2017), for output position ``(p, q)``, output channel ``k``::

        Y[n, p, q, k] = sum_{i, j, c} F[i, j, c, k] * m[n, p, q, g(c), i, j]
                        * X~[n, c](p*S_h - P_h + i*D_h + dy[n, p, q, g(c), i, j],
                                   q*S_w - P_w + j*D_w + dx[n, p, q, g(c), i, j]) + b[k]

    where ``g(c)`` is the offset group of input channel ``c`` and ``X~`` is the bilinear interpolation
    of the seed, ``X~(a, b) = sum_{s, t} max(0, 1 - |a - s|) max(0, 1 - |b - t|) X[s, t]``, the sum
    running over the pixels of the (unpadded) image — so samples outside take zero and partial
    neighbours blend with zeros (torchvision's semantics). ``m = 1`` for v1. With ``groups = g`` the
    channels are split as in a grouped convolution (``c`` runs over the group of ``k`` only).

    Args:
      x: ``(N, H, W, C_in)``.
      offsets: ``(N, H_out, W_out, offset_groups * kh * kw * 2)``; the last axis is ordered
        ``(offset group, tap i * kw + j, [dy, dx])`` — torchvision's channel order, so converting from
        its NCHW layout is ``offsets.transpose(0, 2, 3, 1)``.
      kernel: ``(kh, kw, C_in // groups, C_out)`` (HWIO).
      bias: optional ``(C_out,)``.
      stride, dilation: int or a pair, >= 1.
      padding: zero padding: an int, a pair of ints (one per axis), a pair of ``(lo, hi)`` pairs,
        or "VALID" / "SAME" / "FULL".
      groups: convolution groups; must divide ``C_in`` and ``C_out`` (computed with a block-diagonal
        dense kernel, so the matmul work does not shrink with ``groups``).
      offset_groups: groups of input channels sharing one offset field; must divide ``C_in``.
      mask: optional ``(N, H_out, W_out, offset_groups * kh * kw)`` modulation (v2), used as given
        (apply a sigmoid before, if wanted).
      chunk_size: output rows (of ``N * H_out * W_out``) per chunk; default: as many as fit in a
        64 MiB corner buffer. Only affects memory and speed, not the result.

    Returns:
      ``(N, H_out, W_out, C_out)`` with ``H_out = floor((H + P_lo + P_hi - D (kh - 1) - 1) / S) + 1``.

    Raises:
      ValueError: wrong ranks or shapes (the message names the expected shape), bad stride / padding /
        dilation / groups / offset_groups, a kernel larger than the padded input.
    """
    x = jnp.asarray(x)
    offsets = jnp.asarray(offsets)
    kernel = jnp.asarray(kernel)
    if x.ndim != 4:
        raise ValueError(f"x.shape={x.shape} must be (N, H, W, C_in)")
    if kernel.ndim != 4:
        raise ValueError(f"kernel.shape={kernel.shape} must be (kh, kw, C_in // groups, C_out)")
    offset_groups = check_positive_int(offset_groups, "offset_groups")
    n, h, w, c_in = x.shape
    kh, kw, _, c_out = kernel.shape
    groups = check_groups(groups, c_in, c_out)
    if kernel.shape[2] * groups != c_in:
        raise ValueError(
            f"kernel.shape={kernel.shape} must be (kh, kw, C_in // groups, C_out) = "
            f"({kh}, {kw}, {c_in // groups}, {c_out}) for x with C_in={c_in} and groups={groups}"
        )
    if c_in % offset_groups:
        raise ValueError(f"offset_groups={offset_groups} must divide in_channels={c_in}")
    strides = as_tuple(stride, 2, "stride")
    dilations = as_tuple(dilation, 2, "dilation")
    pads = normalize_padding(padding, (kh, kw), dilations)
    check_window_fits((h, w), (kh, kw), dilations, pads)
    h_out, w_out = (output_size(size, k, s, pad, d) for size, k, s, d, pad
                    in zip((h, w), (kh, kw), strides, dilations, pads))
    taps = kh * kw
    expected = (n, h_out, w_out, offset_groups * taps * 2)
    if offsets.shape != expected:
        raise ValueError(
            f"offsets.shape={offsets.shape} must be (N, H_out, W_out, offset_groups * kh * kw * 2) = {expected}"
        )
    if mask is not None:
        mask = jnp.asarray(mask)
        expected = (n, h_out, w_out, offset_groups * taps)
        if mask.shape != expected:
            raise ValueError(
                f"mask.shape={mask.shape} must be (N, H_out, W_out, offset_groups * kh * kw) = {expected}"
            )
    bias = check_bias(bias, c_out)
    x = floating_input(x, kernel)
    if not jnp.issubdtype(offsets.dtype, jnp.inexact):
        offsets = offsets.astype(jnp.float32)
    kernel = kernel.astype(x.dtype)
    if mask is not None:
        mask = mask.astype(x.dtype)

    rows = n * h_out * w_out
    if chunk_size is None:
        # per output row: the (4, C_in) corner updates, col and d_col of a tap, and the (K, G) geometry
        per_row = (8 * c_in + 16 * taps * offset_groups) * max(jnp.dtype(x.dtype).itemsize, 4)
        chunk = max(1, _CHUNK_BYTES // per_row)
    else:
        chunk = check_positive_int(chunk_size, "chunk_size")
    chunk = min(chunk, max(rows, 1))
    if n * (h + 2) * (w + 2) * offset_groups >= 2**31 or rows * taps * offset_groups >= 2**31:
        raise ValueError(f"x.shape={x.shape} is too large for int32 gather indices; split the batch")

    cfg = _Config(
        n, h, w, c_in, c_out, kh, kw, strides, (pads[0][0], pads[1][0]), dilations, h_out, w_out, groups,
        offset_groups, chunk,
    )
    if rows == 0 or c_out == 0:
        y = jnp.zeros((n, h_out, w_out, c_out), x.dtype)
    else:
        y = _deform_jit(cfg, x, offsets, kernel, mask).reshape(n, h_out, w_out, c_out)
    if bias is not None:
        y = y + bias.astype(y.dtype)
    return y


# ----------------------------------------------------------------------------------------------------
# Core: static config + arrays -> (rows, C_out)
#
# Layout. x is zero-padded by 1 pixel before and 2 after on each spatial axis and turned into a
# "quad" array: row (n, a, b, og) holds the four bilinear corners (a, b), (a, b+1), (a+1, b), (a+1, b+1)
# of the padded image, each ``C_in / offset_groups`` channels, contiguous. A sample at (y, x), clipped to
# [-1, H] x [-1, W], then reads all four corners with ONE row gather at (floor(y) + 1, floor(x) + 1);
# corners outside the image land in the zero border, so no validity masks are needed for the values.
#
# Per tap and offset group the chunk's samples form an (rows, C_in / G) block of the im2col matrix,
# contracted at once with the kernel slice (one matmul each). Keeping the gather's output minor axis
# equal to the gathered row width is what makes XLA:CPU emit a fast fused gather (an (rows, K * C)
# im2col root makes it recompute the gather index per element, ~10x slower).


def _sample_geometry(cfg: _Config, start, size: int, off_chunk):
    """Gather rows and bilinear weights of every sample of ``size`` output rows from ``start``.

    Tap-major layout (K = kh * kw taps, G offset groups): ``idx`` (K, G, size) int32 rows of the quad
    array; bilinear weights ``wb`` and their derivatives ``dwy``, ``dwx`` with respect to the sample
    position, (K, G, 4, size), corners 00, 01, 10, 11; the derivatives are zeroed where the position lies
    outside (-1, H) x (-1, W), as in torchvision.

    Computed by a ``lax.scan`` over the taps on purpose: loop outputs are materialised buffers, whereas
    straight-line index arithmetic would be fused by XLA into every gathered element (recomputed
    ``4 * C_in / G`` times per sample: 5-10x slower on CPU).
    """
    g_off, taps = cfg.offset_groups, cfg.kh * cfg.kw
    pos_dtype = jnp.promote_types(off_chunk.dtype, jnp.float32)
    off = off_chunk.reshape(size, g_off, taps, 2).astype(pos_dtype).transpose(2, 1, 3, 0)  # (K, G, 2, size)
    r = start + jnp.arange(size, dtype=jnp.int32)
    q = r % cfg.w_out
    p = (r // cfg.w_out) % cfg.h_out
    b = r // (cfg.w_out * cfg.h_out)
    hp, wp = cfg.h + 2, cfg.w + 2
    row0 = b * hp  # (size,)
    zero = jnp.zeros((), pos_dtype)
    og = jnp.arange(g_off, dtype=jnp.int32)[:, None]

    def tap(_, a):
        t, off_t = a  # off_t: (G, 2, size)
        base_y = p * cfg.stride[0] - cfg.pad_lo[0] + (t // cfg.kw) * cfg.dilation[0]
        base_x = q * cfg.stride[1] - cfg.pad_lo[1] + (t % cfg.kw) * cfg.dilation[1]
        sy = base_y.astype(pos_dtype) + off_t[:, 0]  # (G, size)
        sx = base_x.astype(pos_dtype) + off_t[:, 1]
        inside = ((sy > -1) & (sy < cfg.h) & (sx > -1) & (sx < cfg.w))[:, None]
        # Clipping to [-1, H] keeps the value (zero beyond) and floor() in range; the derivative is masked.
        sy = jnp.clip(sy, -1.0, cfg.h)
        sx = jnp.clip(sx, -1.0, cfg.w)
        fy, fx = jnp.floor(sy), jnp.floor(sx)
        ly, lx = sy - fy, sx - fx
        hy, hx = 1 - ly, 1 - lx
        wb = jnp.stack([hy * hx, hy * lx, ly * hx, ly * lx], axis=1)  # (G, 4, size)
        dwy = jnp.where(inside, jnp.stack([-hx, -lx, hx, lx], axis=1), zero)
        dwx = jnp.where(inside, jnp.stack([-hy, hy, -ly, ly], axis=1), zero)
        # NaN positions give arbitrary ints: clip the row index so the gather stays in bounds.
        a_ = jnp.clip(fy.astype(jnp.int32) + 1, 0, hp - 1)
        c_ = jnp.clip(fx.astype(jnp.int32) + 1, 0, wp - 1)
        idx = ((row0 + a_) * wp + c_) * g_off + og
        return None, (idx, wb, dwy, dwx)

    _, (idx, wb, dwy, dwx) = lax.scan(tap, None, (jnp.arange(taps, dtype=jnp.int32), off))
    return idx, wb, dwy, dwx


def _quad(cfg: _Config, x):
    """(N, H, W, C) -> (N * (H+2) * (W+2) * G, 4, C / G): the four corners of every padded cell."""
    g_off = cfg.offset_groups
    xp = jnp.pad(x, ((0, 0), (1, 2), (1, 2), (0, 0)))
    xp = xp.reshape(cfg.n, cfg.h + 3, cfg.w + 3, g_off, cfg.c_in // g_off)
    hp, wp = cfg.h + 2, cfg.w + 2
    quad = jnp.stack(
        [xp[:, :hp, :wp], xp[:, :hp, 1:], xp[:, 1:, :wp], xp[:, 1:, 1:]], axis=4
    )  # (N, Hp, Wp, G, 4, Cg)
    return quad.reshape(-1, 4, cfg.c_in // g_off)


def _unquad(cfg: _Config, d_quad):
    """Adjoint of :func:`_quad`: fold corner gradients back onto the pixels, drop the border."""
    g_off = cfg.offset_groups
    hp, wp = cfg.h + 2, cfg.w + 2
    dq = d_quad.reshape(cfg.n, hp, wp, g_off, 4, cfg.c_in // g_off)
    dxp = jnp.zeros((cfg.n, cfg.h + 3, cfg.w + 3, g_off, cfg.c_in // g_off), d_quad.dtype)
    dxp = dxp.at[:, :hp, :wp].add(dq[:, :, :, :, 0])
    dxp = dxp.at[:, :hp, 1:].add(dq[:, :, :, :, 1])
    dxp = dxp.at[:, 1:, :wp].add(dq[:, :, :, :, 2])
    dxp = dxp.at[:, 1:, 1:].add(dq[:, :, :, :, 3])
    return dxp[:, 1 : cfg.h + 1, 1 : cfg.w + 1].reshape(cfg.n, cfg.h, cfg.w, cfg.c_in)


def _dense_kernel(cfg: _Config, kernel):
    """(kh, kw, C_in/g, C_out) -> (K, C_in, C_out); block-diagonal over the g groups when g > 1."""
    taps, g = cfg.kh * cfg.kw, cfg.groups
    k = kernel.reshape(taps, cfg.c_in // g, cfg.c_out)
    if g == 1:
        return k
    cpg, opg = cfg.c_in // g, cfg.c_out // g
    same = (jnp.arange(cfg.c_in)[:, None] // cpg) == (jnp.arange(cfg.c_out)[None, :] // opg)
    return jnp.where(same[None], jnp.tile(k, (1, g, 1)), jnp.zeros((), k.dtype))


def _undense_kernel(cfg: _Config, dk):
    """Adjoint of :func:`_dense_kernel`: keep the block-diagonal entries."""
    taps, g = cfg.kh * cfg.kw, cfg.groups
    if g == 1:
        return dk.reshape(cfg.kh, cfg.kw, cfg.c_in, cfg.c_out)
    cpg, opg = cfg.c_in // g, cfg.c_out // g
    dk = dk.reshape(taps, g, cpg, g, opg)
    blocks = jnp.stack([dk[:, i, :, i, :] for i in range(g)], axis=2)  # (K, cpg, g, opg)
    return blocks.reshape(cfg.kh, cfg.kw, cpg, cfg.c_out)


def _dot(a, b):
    return jnp.dot(a, b, precision=lax.Precision.HIGHEST)


def _mask_kg(cfg: _Config, mask_chunk, size):
    """Mask rows (size, G * K) -> (K, G, 1, size), broadcastable against the corner weights."""
    if mask_chunk is None:
        return None
    return mask_chunk.reshape(size, cfg.offset_groups, cfg.kh * cfg.kw).transpose(2, 1, 0)[:, :, None, :]


def _sample_tap(quad, idx, w, t, og):
    """Tap ``t``, offset group ``og``: ``(corners (size, 4, Cg), sum_f w[f] * corner_f (size, Cg))``.

    ONE gather of quad rows; the weighted sum is fused with it. The fused loop's minor axis is the
    gathered row (Cg channels), which XLA:CPU vectorises; an (rows, K * C) im2col root would not be.
    """
    v = quad.at[idx[t, og]].get(mode="promise_in_bounds")  # (size, 4, Cg)
    return v, sum(w[t, og, f, :, None] * v[:, f] for f in range(4))


def _chunk_forward(cfg: _Config, quad, kd, start, size, off_chunk, mask_chunk):
    idx, wb, _, _ = _sample_geometry(cfg, start, size, off_chunk)
    w = wb.astype(quad.dtype)
    m = _mask_kg(cfg, mask_chunk, size)
    if m is not None:
        w = w * m
    cg, taps = cfg.c_in // cfg.offset_groups, cfg.kh * cfg.kw
    out = None
    for t in range(taps):
        for og in range(cfg.offset_groups):
            _, col = _sample_tap(quad, idx, w, t, og)
            y = _dot(col, kd[t, og * cg : (og + 1) * cg])
            out = y if out is None else out + y
    return out


def _chunks(cfg: _Config):
    rows = cfg.n * cfg.h_out * cfg.w_out
    return rows, rows // cfg.chunk, rows % cfg.chunk


def _concat(parts):
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0)


def _forward(cfg: _Config, x, offsets, kernel, mask):
    quad = _quad(cfg, x)
    kd = _dense_kernel(cfg, kernel)
    rows, n_full, rem = _chunks(cfg)
    off = offsets.reshape(rows, -1)
    msk = None if mask is None else mask.reshape(rows, -1)
    b = cfg.chunk
    parts = []
    if n_full == 1:
        parts.append(_chunk_forward(cfg, quad, kd, 0, b, off[:b], None if msk is None else msk[:b]))
    elif n_full > 1:
        xs = (
            jnp.arange(n_full, dtype=jnp.int32) * b,
            off[: n_full * b].reshape(n_full, b, -1),
            None if msk is None else msk[: n_full * b].reshape(n_full, b, -1),
        )
        ys = lax.map(lambda a: _chunk_forward(cfg, quad, kd, a[0], b, a[1], a[2]), xs)
        parts.append(ys.reshape(n_full * b, cfg.c_out))
    if rem:
        s = n_full * b
        parts.append(_chunk_forward(cfg, quad, kd, s, rem, off[s:], None if msk is None else msk[s:]))
    return _concat(parts)


def _chunk_backward(cfg: _Config, quad, kd, d_quad, d_kd, start, size, off_chunk, mask_chunk, g):
    """Accumulate one chunk's gradients into (d_quad, d_kd); return its (d_offsets, d_mask) rows.

    A ``lax.scan`` over the taps (the scatter-adds update ``d_quad`` in place in the loop carry); measured
    2-3x faster on CPU than the same code unrolled.
    """
    taps, g_off = cfg.kh * cfg.kw, cfg.offset_groups
    cg = cfg.c_in // g_off
    idx, wb, dwy, dwx = _sample_geometry(cfg, start, size, off_chunk)
    wb_x = wb.astype(quad.dtype)
    m = _mask_kg(cfg, mask_chunk, size)
    w = wb_x if m is None else wb_x * m

    def tap(d_quad, a):
        idx_t, w_t, kd_t = a  # (G, size), (G, 4, size), (C_in, C_out)
        d_kd_t, u_t = [], []
        for og in range(g_off):
            sl = slice(og * cg, (og + 1) * cg)
            v, col = _sample_tap(quad, idx_t[None], w_t[None], 0, og)
            d_kd_t.append(_dot(col.T, g))  # d_kernel[t, og channels] = col^T g
            d_col = _dot(g, kd_t[sl].T)  # (size, Cg) = g kernel^T
            # (4, size): <d_col, corner f>, as one batched mat-vec (25% less CPU time than four reductions)
            u_t.append(jnp.einsum("sc,sfc->fs", d_col, v, precision=lax.Precision.HIGHEST))
            upd = jnp.stack([w_t[og, f, :, None] * d_col for f in range(4)], axis=1)  # (size, 4, Cg)
            d_quad = d_quad.at[idx_t[og]].add(upd, mode="promise_in_bounds")  # ONE scatter-add
        return d_quad, (_concat(d_kd_t), jnp.stack(u_t))

    d_quad, (d_kd_c, u) = lax.scan(tap, d_quad, (idx, w, kd))  # u: (K, G, 4, size)
    d_kd = d_kd + d_kd_c
    uf = u.astype(dwy.dtype)
    d_sy = jnp.sum(dwy * uf, axis=2)  # (K, G, size)
    d_sx = jnp.sum(dwx * uf, axis=2)
    if m is not None:
        d_m = jnp.sum(wb_x * u, axis=2)
        d_sy = d_sy * m[:, :, 0].astype(d_sy.dtype)
        d_sx = d_sx * m[:, :, 0].astype(d_sx.dtype)
        d_mask = d_m.transpose(2, 1, 0).reshape(size, g_off * taps)
    else:
        d_mask = None
    d_off = jnp.stack([d_sy, d_sx], axis=-1).transpose(2, 1, 0, 3).reshape(size, g_off * taps * 2)
    return d_quad, d_kd, d_off, d_mask


def _backward(cfg: _Config, x, offsets, kernel, mask, g):
    quad = _quad(cfg, x)
    kd = _dense_kernel(cfg, kernel)
    rows, n_full, rem = _chunks(cfg)
    off = offsets.reshape(rows, -1)
    msk = None if mask is None else mask.reshape(rows, -1)
    g = g.reshape(rows, cfg.c_out).astype(x.dtype)
    b = cfg.chunk
    d_quad = jnp.zeros_like(quad)
    d_kd = jnp.zeros_like(kd)
    d_offs, d_masks = [], []
    if n_full == 1:
        d_quad, d_kd, d_o, d_m = _chunk_backward(
            cfg, quad, kd, d_quad, d_kd, 0, b, off[:b], None if msk is None else msk[:b], g[:b]
        )
        d_offs.append(d_o)
        d_masks.append(d_m)
    elif n_full > 1:

        def body(carry, a):
            d_quad, d_kd = carry
            d_quad, d_kd, d_o, d_m = _chunk_backward(cfg, quad, kd, d_quad, d_kd, a[0], b, a[1], a[2], a[3])
            return (d_quad, d_kd), (d_o, d_m)

        xs = (
            jnp.arange(n_full, dtype=jnp.int32) * b,
            off[: n_full * b].reshape(n_full, b, -1),
            None if msk is None else msk[: n_full * b].reshape(n_full, b, -1),
            g[: n_full * b].reshape(n_full, b, -1),
        )
        (d_quad, d_kd), (d_o, d_m) = lax.scan(body, (d_quad, d_kd), xs)
        d_offs.append(d_o.reshape(n_full * b, -1))
        d_masks.append(None if d_m is None else d_m.reshape(n_full * b, -1))
    if rem:
        s = n_full * b
        d_quad, d_kd, d_o, d_m = _chunk_backward(
            cfg, quad, kd, d_quad, d_kd, s, rem, off[s:], None if msk is None else msk[s:], g[s:]
        )
        d_offs.append(d_o)
        d_masks.append(d_m)
    d_offsets = _concat(d_offs).reshape(offsets.shape).astype(offsets.dtype)
    d_mask = None if mask is None else _concat(d_masks).reshape(mask.shape).astype(mask.dtype)
    return _unquad(cfg, d_quad).astype(x.dtype), d_offsets, _undense_kernel(cfg, d_kd).astype(kernel.dtype), d_mask


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _deform(cfg: _Config, x, offsets, kernel, mask):
    return _forward(cfg, x, offsets, kernel, mask)


def _deform_fwd(cfg: _Config, x, offsets, kernel, mask):
    return _forward(cfg, x, offsets, kernel, mask), (x, offsets, kernel, mask)


def _deform_bwd(cfg: _Config, res, g):
    x, offsets, kernel, mask = res
    return _backward(cfg, x, offsets, kernel, mask, g)


_deform.defvjp(_deform_fwd, _deform_bwd)
# jit once per static config: eager calls then compile one program instead of dispatching op by op.
_deform_jit = jax.jit(_deform, static_argnums=0)
