"""Deformable convolution, v1 (Dai et al. 2017) and modulated v2 (Zhu et al. 2019), seed 004.

Each kernel tap ``(i, j)`` of each output position gets its own learned offset ``(dy, dx)``; the input
is read there by bilinear interpolation (zero outside the image), optionally multiplied by a modulation
scalar (v2), and the samples are contracted with the kernel as in an ordinary convolution.

Implementation (one XLA graph, no Python loops over data):

* forward: for a chunk of output positions, ONE gather reads the four bilinear corners of every sample
  (rows of ``C_in / offset_groups`` contiguous channels), a fused weighted sum turns them into the
  im2col matrix ``cols`` of shape ``(rows, kh * kw * C_in)``, and ONE matmul (a batched one per group)
  contracts it with the kernel;
* backward (``jax.custom_vjp``): the chunk is recomputed (one gather), ``d_cols = g @ kernel^T`` and
  ``d_kernel += cols^T @ g`` are two matmuls, the offset and mask gradients are closed-form
  reductions of ``d_cols`` against the corner values, and ``d_x`` is ONE scatter-add of the weighted
  ``d_cols`` rows. Autodiff through four separate gathers would instead emit four scatter-adds plus
  the derivative graph of the index arithmetic, which is where its time goes.
* memory: the output rows ``N * H_out * W_out`` are processed in chunks (``lax.map`` / ``lax.scan``), so
  the corner buffer never exceeds about ``_CHUNK_BYTES``, whatever the batch.

Forward-mode differentiation (``jax.jvp``) is not available through the custom VJP; reverse mode of
any order is (the backward pass is itself made of differentiable ops).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnjax.ops.conv import as_tuple
from cnnjax.ops.padding import normalize_padding

# Budget for the largest per-chunk intermediate (the four corners of every sample, ``rows*K*C_in*4``
# values). 64 MiB keeps a (64, 56, 56, 256) 3x3 layer far below 8 GB and the benchmark shapes in one chunk.
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


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _positive_int(value, name: str) -> int:
    if not _is_int(value) or int(value) < 1:
        raise ValueError(f"{name}={value!r} must be a positive int")
    return int(value)


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
      groups: convolution groups; must divide ``C_in`` and ``C_out``.
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
    groups = _positive_int(groups, "groups")
    offset_groups = _positive_int(offset_groups, "offset_groups")
    n, h, w, c_in = x.shape
    kh, kw, _, c_out = kernel.shape
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide in_channels={c_in}")
    if c_out % groups:
        raise ValueError(f"groups={groups} must divide out_channels={c_out} (kernel.shape[-1])")
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
    out_size = []
    for axis, (size, k, s, d, (lo, hi)) in enumerate(zip((h, w), (kh, kw), strides, dilations, pads)):
        extent = d * (k - 1) + 1
        if size + lo + hi < extent:
            raise ValueError(
                f"kernel of size {k} (dilation {d}) on spatial axis {axis} is larger than the padded input "
                f"{size} + {lo} + {hi}"
            )
        out_size.append((size + lo + hi - extent) // s + 1)
    h_out, w_out = out_size
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
    if bias is not None:
        bias = jnp.asarray(bias)
        if bias.shape != (c_out,):
            raise ValueError(f"bias.shape={bias.shape} must be (C_out,) = ({c_out},)")
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(kernel.dtype if jnp.issubdtype(kernel.dtype, jnp.inexact) else jnp.float32)
    if not jnp.issubdtype(offsets.dtype, jnp.inexact):
        offsets = offsets.astype(jnp.float32)
    kernel = kernel.astype(x.dtype)
    if mask is not None:
        mask = mask.astype(x.dtype)

    rows = n * h_out * w_out
    if chunk_size is None:
        per_row = taps * c_in * 4 * jnp.dtype(x.dtype).itemsize
        chunk = max(1, _CHUNK_BYTES // max(per_row, 1))
    else:
        chunk = _positive_int(chunk_size, "chunk_size")
    chunk = min(chunk, max(rows, 1))
    if n * h * w * offset_groups >= 2**31 or rows * taps * offset_groups * 4 >= 2**31:
        raise ValueError(f"x.shape={x.shape} is too large for int32 gather indices")

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


def _sample_geometry(cfg: _Config, start, size: int, off_chunk):
    """Corner indices, bilinear weights and their derivatives for ``size`` output rows from ``start``.

    Returns ``idx`` (size, K, G, 4) int32 rows into ``x.reshape(N*H*W*G, C_in // G)``; ``wb`` (size, K, G, 4)
    bilinear weights (zero for corners outside the image); ``dwy``, ``dwx`` their derivatives with
    respect to the sample's y and x.
    """
    g_off, taps = cfg.offset_groups, cfg.kh * cfg.kw
    pos_dtype = jnp.promote_types(off_chunk.dtype, jnp.float32)
    off = off_chunk.reshape(size, g_off, taps, 2).astype(pos_dtype).transpose(0, 2, 1, 3)  # (size, K, G, 2)
    r = start + jnp.arange(size, dtype=jnp.int32)
    q = r % cfg.w_out
    p = (r // cfg.w_out) % cfg.h_out
    b = r // (cfg.w_out * cfg.h_out)
    ti = jnp.repeat(jnp.arange(cfg.kh, dtype=jnp.int32), cfg.kw)
    tj = jnp.tile(jnp.arange(cfg.kw, dtype=jnp.int32), cfg.kh)
    base_y = p[:, None] * cfg.stride[0] - cfg.pad_lo[0] + ti[None, :] * cfg.dilation[0]  # (size, K)
    base_x = q[:, None] * cfg.stride[1] - cfg.pad_lo[1] + tj[None, :] * cfg.dilation[1]
    # Positions beyond [-2, H] have all four corners outside: clipping there changes neither the value (0)
    # nor the gradient (0), and keeps floor() in int32 range for huge offsets.
    sy = jnp.clip(base_y[:, :, None].astype(pos_dtype) + off[..., 0], -2.0, cfg.h)
    sx = jnp.clip(base_x[:, :, None].astype(pos_dtype) + off[..., 1], -2.0, cfg.w)
    fy, fx = jnp.floor(sy), jnp.floor(sx)
    ly, lx = sy - fy, sx - fx
    y0, x0 = fy.astype(jnp.int32), fx.astype(jnp.int32)
    hy, hx = 1 - ly, 1 - lx
    vy0 = (y0 >= 0) & (y0 < cfg.h)
    vy1 = (y0 + 1 >= 0) & (y0 + 1 < cfg.h)
    vx0 = (x0 >= 0) & (x0 < cfg.w)
    vx1 = (x0 + 1 >= 0) & (x0 + 1 < cfg.w)
    valid = jnp.stack([vy0 & vx0, vy0 & vx1, vy1 & vx0, vy1 & vx1], axis=-1)  # corners 00, 01, 10, 11
    wb = jnp.stack([hy * hx, hy * lx, ly * hx, ly * lx], axis=-1)
    dwy = jnp.stack([-hx, -lx, hx, lx], axis=-1)
    dwx = jnp.stack([-hy, hy, -ly, ly], axis=-1)
    zero = jnp.zeros((), pos_dtype)
    wb, dwy, dwx = (jnp.where(valid, a, zero) for a in (wb, dwy, dwx))
    yc = jnp.stack([y0, y0, y0 + 1, y0 + 1], axis=-1)
    xc = jnp.stack([x0, x0 + 1, x0, x0 + 1], axis=-1)
    yc = jnp.clip(yc, 0, cfg.h - 1)
    xc = jnp.clip(xc, 0, cfg.w - 1)
    g = jnp.arange(g_off, dtype=jnp.int32)[None, None, :, None]
    idx = ((b[:, None, None, None] * cfg.h + yc) * cfg.w + xc) * g_off + g
    return idx, wb, dwy, dwx


def _kernel_matrix(cfg: _Config, kernel):
    """Kernel (kh, kw, C_in/g, C_out) as (K, C_in/g, g, C_out/g)."""
    g = cfg.groups
    return kernel.reshape(cfg.kh * cfg.kw, cfg.c_in // g, g, cfg.c_out // g)


def _cols_to_out(cfg: _Config, cols, kmat):
    size = cols.shape[0]
    g = cfg.groups
    cols = cols.reshape(size, cfg.kh * cfg.kw, g, cfg.c_in // g)
    if g == 1:
        return jnp.dot(
            cols.reshape(size, -1), kmat.reshape(-1, cfg.c_out), precision=lax.Precision.HIGHEST
        )
    out = jnp.einsum("rkgc,kcgo->rgo", cols, kmat, precision=lax.Precision.HIGHEST)
    return out.reshape(size, cfg.c_out)


def _chunk_forward(cfg: _Config, x_rows, kmat, start, size, off_chunk, mask_chunk):
    idx, wb, _, _ = _sample_geometry(cfg, start, size, off_chunk)
    taps, g_off = cfg.kh * cfg.kw, cfg.offset_groups
    weights = wb.astype(x_rows.dtype)
    if mask_chunk is not None:
        m = mask_chunk.reshape(size, g_off, taps).transpose(0, 2, 1)
        weights = weights * m[..., None]
    vals = x_rows.at[idx].get(mode="promise_in_bounds")  # (size, K, G, 4, Cg): the one gather
    cols = jnp.einsum("rkgf,rkgfc->rkgc", weights, vals, precision=lax.Precision.HIGHEST)
    return _cols_to_out(cfg, cols, kmat)


def _chunks(cfg: _Config):
    rows = cfg.n * cfg.h_out * cfg.w_out
    return rows, rows // cfg.chunk, rows % cfg.chunk


def _forward(cfg: _Config, x, offsets, kernel, mask):
    g_off = cfg.offset_groups
    x_rows = x.reshape(cfg.n * cfg.h * cfg.w * g_off, cfg.c_in // g_off)
    kmat = _kernel_matrix(cfg, kernel)
    rows, n_full, rem = _chunks(cfg)
    off = offsets.reshape(rows, -1)
    msk = None if mask is None else mask.reshape(rows, -1)
    b = cfg.chunk
    parts = []
    if n_full == 1:
        parts.append(_chunk_forward(cfg, x_rows, kmat, 0, b, off[:b], None if msk is None else msk[:b]))
    elif n_full > 1:
        xs = (
            jnp.arange(n_full, dtype=jnp.int32) * b,
            off[: n_full * b].reshape(n_full, b, -1),
            None if msk is None else msk[: n_full * b].reshape(n_full, b, -1),
        )
        ys = lax.map(lambda a: _chunk_forward(cfg, x_rows, kmat, a[0], b, a[1], a[2]), xs)
        parts.append(ys.reshape(n_full * b, cfg.c_out))
    if rem:
        s = n_full * b
        parts.append(_chunk_forward(cfg, x_rows, kmat, s, rem, off[s:], None if msk is None else msk[s:]))
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0)


def _chunk_backward(cfg: _Config, x_rows, kmat, start, size, off_chunk, mask_chunk, g_chunk):
    """Gradients of one chunk: (d_x row updates with their indices, d_kernel, d_offsets, d_mask)."""
    taps, g_off, grp = cfg.kh * cfg.kw, cfg.offset_groups, cfg.groups
    cg = cfg.c_in // g_off
    idx, wb, dwy, dwx = _sample_geometry(cfg, start, size, off_chunk)
    dt = x_rows.dtype
    wb_x = wb.astype(dt)
    if mask_chunk is not None:
        m = mask_chunk.reshape(size, g_off, taps).transpose(0, 2, 1)  # (size, K, G)
        w_all = wb_x * m[..., None]
    else:
        m = None
        w_all = wb_x
    vals = x_rows.at[idx].get(mode="promise_in_bounds")  # (size, K, G, 4, Cg)
    cols = jnp.einsum("rkgf,rkgfc->rkgc", w_all, vals, precision=lax.Precision.HIGHEST)
    # d_kernel = cols^T g ; d_cols = g kernel^T (per conv group)
    cols_g = cols.reshape(size, taps, grp, cfg.c_in // grp)
    g_g = g_chunk.reshape(size, grp, cfg.c_out // grp)
    if grp == 1:
        d_kmat = jnp.dot(cols_g.reshape(size, -1).T, g_chunk, precision=lax.Precision.HIGHEST)
        d_kmat = d_kmat.reshape(kmat.shape)
        d_cols = jnp.dot(g_chunk, kmat.reshape(-1, cfg.c_out).T, precision=lax.Precision.HIGHEST)
    else:
        d_kmat = jnp.einsum("rkgc,rgo->kcgo", cols_g, g_g, precision=lax.Precision.HIGHEST)
        d_cols = jnp.einsum("rgo,kcgo->rkgc", g_g, kmat, precision=lax.Precision.HIGHEST)
    d_cols = d_cols.reshape(size, taps, g_off, cg)
    # u[f] = <d_cols, corner f values> per sample; everything else is closed-form in the weights.
    u = jnp.einsum("rkgc,rkgfc->rkgf", d_cols, vals, precision=lax.Precision.HIGHEST)
    uf = u.astype(dwy.dtype)
    d_sy = jnp.sum(dwy * uf, axis=-1)
    d_sx = jnp.sum(dwx * uf, axis=-1)
    if m is not None:
        d_m = jnp.sum(wb_x * u, axis=-1)  # (size, K, G)
        d_sy = d_sy * m.astype(d_sy.dtype)
        d_sx = d_sx * m.astype(d_sx.dtype)
        d_mask = d_m.transpose(0, 2, 1).reshape(size, g_off * taps)
    else:
        d_mask = None
    d_off = jnp.stack([d_sy, d_sx], axis=-1).transpose(0, 2, 1, 3).reshape(size, g_off * taps * 2)
    updates = w_all[..., None] * d_cols[:, :, :, None, :]  # (size, K, G, 4, Cg)
    return idx.reshape(-1), updates.reshape(-1, cg), d_kmat, d_off, d_mask


def _backward(cfg: _Config, x, offsets, kernel, mask, g):
    g_off = cfg.offset_groups
    cg = cfg.c_in // g_off
    x_rows = x.reshape(cfg.n * cfg.h * cfg.w * g_off, cg)
    kmat = _kernel_matrix(cfg, kernel)
    rows, n_full, rem = _chunks(cfg)
    off = offsets.reshape(rows, -1)
    msk = None if mask is None else mask.reshape(rows, -1)
    g = g.reshape(rows, cfg.c_out).astype(x.dtype)
    b = cfg.chunk
    dx = jnp.zeros_like(x_rows)
    dk = jnp.zeros_like(kmat)
    d_offs, d_masks = [], []

    def scatter(dx, idx, upd):
        return dx.at[idx].add(upd, mode="promise_in_bounds")

    if n_full == 1:
        idx, upd, dk, d_o, d_m = _chunk_backward(
            cfg, x_rows, kmat, 0, b, off[:b], None if msk is None else msk[:b], g[:b]
        )
        dx = scatter(dx, idx, upd)
        d_offs.append(d_o)
        d_masks.append(d_m)
    elif n_full > 1:

        def body(carry, a):
            dx, dk = carry
            idx, upd, dk_c, d_o, d_m = _chunk_backward(cfg, x_rows, kmat, a[0], b, a[1], a[2], a[3])
            return (scatter(dx, idx, upd), dk + dk_c), (d_o, d_m)

        xs = (
            jnp.arange(n_full, dtype=jnp.int32) * b,
            off[: n_full * b].reshape(n_full, b, -1),
            None if msk is None else msk[: n_full * b].reshape(n_full, b, -1),
            g[: n_full * b].reshape(n_full, b, -1),
        )
        (dx, dk), (d_o, d_m) = lax.scan(body, (dx, dk), xs)
        d_offs.append(d_o.reshape(n_full * b, -1))
        d_masks.append(None if d_m is None else d_m.reshape(n_full * b, -1))
    if rem:
        s = n_full * b
        idx, upd, dk_c, d_o, d_m = _chunk_backward(
            cfg, x_rows, kmat, s, rem, off[s:], None if msk is None else msk[s:], g[s:]
        )
        dx = scatter(dx, idx, upd)
        dk = dk + dk_c
        d_offs.append(d_o)
        d_masks.append(d_m)
    cat = (lambda parts: parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0))
    d_offsets = cat(d_offs).reshape(offsets.shape).astype(offsets.dtype)
    d_mask = None if mask is None else cat(d_masks).reshape(mask.shape).astype(mask.dtype)
    return dx.reshape(x.shape), d_offsets, dk.reshape(kernel.shape), d_mask


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
