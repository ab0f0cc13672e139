"""Convolution as one matrix product over extracted patches ("im2col"), for speed on CPU.

Same maths and conventions as :func:`cnnjax.ops.conv` (seeds 000/001/003/004: cross-correlation, no
kernel flip, bias, stride, padding, dilation, groups); only the formulation differs:

    P[n, p, (u, m)] = X[n, p*S + u*D, m]            (the patch matrix, one row per output position)
    Y[n, p, k]      = sum_{(u, m)} P[n, p, (u, m)] F[u, m, k] + b[k]   (one GEMM per group)

XLA:CPU's direct convolution is slow for the small channel counts of LeNet-style networks (a 5x5 conv
on a (128, 28, 28, 1) batch takes ~10x PyTorch's time), while its GEMM is fast; the patch matrix is
built by ``prod(kernel_size)`` strided slices that XLA fuses into one loop, and reverse-mode autodiff
of slices + GEMM gives the usual backward (``dF = P^T dY``; ``dX`` = the sum of the shifted slices of
``dY F^T``, i.e. seed 001's "full convolution with the rotated kernel", computed as col2im).
See ``benchmarks/run.py`` (section ``conv``) for the measured trade-off.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

from cnnjax.ops.conv import DIMENSION_NUMBERS, as_tuple, prepare_conv
from cnnjax.ops.conv import conv as _conv_op
from cnnjax.ops.padding import pad


def extract_conv_patches(x, window, *, stride=1, dilation=1, pads=None):
    """Patch tensor ``(N, *out_spatial, prod(window), C)``: ``P[n, p, u, m] = X[n, p*S + u*D, m]``.

    ``x`` is ``(N, *spatial, C)`` and already padded unless ``pads`` (one (lo, hi) pair per axis,
    zero fill) is given. Taps ``u`` are in row-major order of ``window`` (the order of the kernel's
    leading axes).
    """
    nd = x.ndim - 2
    window = tuple(int(k) for k in window)
    strides = as_tuple(stride, nd, "stride")
    dilations = as_tuple(dilation, nd, "dilation")
    if pads is not None and any(lo or hi for lo, hi in pads):
        x = jnp.pad(x, ((0, 0), *[(int(lo), int(hi)) for lo, hi in pads], (0, 0)))
    spatial = x.shape[1:-1]
    out = [(size - d * (k - 1) - 1) // s + 1 for size, k, d, s in zip(spatial, window, dilations, strides)]
    taps = []
    for offsets in itertools.product(*[range(k) for k in window]):
        start = (0, *[u * d for u, d in zip(offsets, dilations)], 0)
        limit = (x.shape[0], *[u * d + (o - 1) * s + 1 for u, d, o, s in zip(offsets, dilations, out, strides)],
                 x.shape[-1])
        taps.append(lax.slice(x, start, limit, (1, *strides, 1)))
    return jnp.stack(taps, axis=-2)


def conv_im2col(x, kernel, bias=None, *, stride=1, padding="VALID", dilation=1, groups: int = 1,
                pad_mode: str = "constant", precision=None):
    """Convolution (cross-correlation) with bias computed as patches @ kernel; ``ops.conv``'s semantics.

    Seeds 000/001/003/004: ``Y[n, p, k] = sum_{u, m} X[n, p*S + u*D, m] F[u, m, k] + b[k]``; with
    ``groups=g`` output group ``s`` sees only input group ``s``. Output size per axis:
    ``floor((H + P_lo + P_hi - D (M - 1) - 1) / S) + 1``.

    Args:
      x: ``(N, *spatial, C_in)``, 1 to 3 spatial axes; integer inputs become the kernel's float type.
      kernel: ``(*k, C_in // groups, C_out)`` (HWIO for 2-D).
      bias: optional ``(C_out,)``.
      stride, dilation: int or one int per spatial axis, >= 1.
      padding: "VALID", "SAME", "FULL", an int, or one int / (lo, hi) pair per spatial axis.
      groups: channel groups; must divide ``C_in`` and ``C_out``.
      pad_mode: "constant" (zeros), "edge", "reflect" or "wrap", as in ``ops.conv``.
      precision: ``lax.Precision`` of the GEMM (``None``: the backend default, float32 on CPU).

    Returns:
      ``(N, *out_spatial, C_out)`` in ``x``'s floating dtype; equal to ``ops.conv(...)`` up to
      float rounding.

    Raises:
      ValueError: the same checks, with the same messages, as ``ops.conv``, before any tracing.
    """
    a = prepare_conv(x, kernel, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                     pad_mode=pad_mode)
    x, kernel, bias, groups = a.x, a.kernel, a.bias, a.groups
    c_in, c_out = x.shape[-1], kernel.shape[-1]
    window = kernel.shape[:a.nd]
    patches = extract_conv_patches(x, window, stride=a.strides, dilation=a.dilations, pads=a.pads)
    n, out_spatial = patches.shape[0], patches.shape[1:-2]
    taps = math.prod(window)
    cg, og = c_in // groups, c_out // groups
    rows = n * math.prod(out_spatial)
    if groups == 1:
        y = jnp.dot(patches.reshape(rows, taps * c_in), kernel.reshape(taps * c_in, c_out), precision=precision)
    else:
        p = patches.reshape(rows, taps, groups, cg)
        k = kernel.reshape(taps, cg, groups, og)
        y = jnp.einsum("rtgc,tcgo->rgo", p, k, precision=precision).reshape(rows, c_out)
    y = y.reshape(n, *out_spatial, c_out)
    if bias is not None:
        y = y + bias.astype(y.dtype)
    return y


def im2col_is_faster(x_shape, kernel_shape, groups: int = 1) -> bool:
    """Dispatch rule used by ``benchmarks/lenet_fast.dispatch_conv``: dense convs with a short patch row.

    True when ``groups == 1`` and ``prod(k) * C_in <= 256`` (grouped and depthwise convs become many tiny
    GEMMs). Measured (``benchmarks/run.py --only conv``): im2col wins for LeNet's first conv forward and
    loses for 3x3x16 ResNet convs, so it is a prototype, not a recommendation for ``ops.conv``.
    """
    del x_shape
    taps = math.prod(kernel_shape[:-2])
    return groups == 1 and taps * kernel_shape[-2] <= 256


# ------------------------------------------------------------------ small-channel conv with a custom VJP


def _lax_conv_valid(x, kernel, strides, dilations):
    nd = x.ndim - 2
    return lax.conv_general_dilated(x, kernel, strides, [(0, 0)] * nd, rhs_dilation=dilations,
                                    dimension_numbers=DIMENSION_NUMBERS[nd], precision=lax.Precision.HIGHEST)


def _shift_add_valid(x, kernel, strides, dilations):
    """``sum_{u, m} slice_u(x)[..., m, None] * kernel[u, m, :]``: one fused elementwise loop, no GEMM."""
    nd = x.ndim - 2
    window, c_in = kernel.shape[:nd], kernel.shape[-2]
    patches = extract_conv_patches(x, window, stride=strides, dilation=dilations)  # fused away by XLA
    flat = kernel.reshape(-1, c_in, kernel.shape[-1])
    y = None
    for t in range(flat.shape[0]):
        for m in range(c_in):
            term = patches[..., t, m, None] * flat[t, m]
            y = term if y is None else y + term
    return y


def _im2col_valid(x, kernel, strides, dilations):
    nd = x.ndim - 2
    patches = extract_conv_patches(x, kernel.shape[:nd], stride=strides, dilation=dilations)
    rows = patches.shape[:-2]
    y = jnp.dot(patches.reshape(-1, patches.shape[-2] * patches.shape[-1]),
                kernel.reshape(-1, kernel.shape[-1]))
    return y.reshape(*rows, kernel.shape[-1])


# Off (0): the shift-and-add forward is ~15x faster than XLA's conv for LeNet's first layer alone, but made
# the whole LeNet step 0.86x as fast (XLA materialises the 25 shifted slices once ReLU / pooling follow).
SHIFT_ADD_MAX_TAPS_X_CIN = 0
IM2COL_DX_MAX_TAPS_X_CIN = 256


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_small_valid(x, kernel, strides, dilations):
    return _small_forward(x, kernel, strides, dilations)


def _small_forward(x, kernel, strides, dilations):
    nd = x.ndim - 2
    if math.prod(kernel.shape[:nd]) * kernel.shape[-2] <= SHIFT_ADD_MAX_TAPS_X_CIN:
        return _shift_add_valid(x, kernel, strides, dilations)
    return _lax_conv_valid(x, kernel, strides, dilations)


def _conv_small_fwd(x, kernel, strides, dilations):
    return _small_forward(x, kernel, strides, dilations), (x, kernel)


def _dkernel_patch_dot(x, dy, window, dilations):
    """``dF[u, m, k] = sum_{n, p} X[n, p + u D, m] dY[n, p, k]`` as one GEMM ``P^T dY`` (stride 1).

    The patch matrix is laid out ``(taps * C_in, N * positions)`` (contiguous rows), which XLA:CPU's GEMM
    handles ~2x faster than its backward-filter convolution when ``C_in = 1``.
    """
    patches = extract_conv_patches(x, window, dilation=dilations)  # (N, *out, taps, C_in)
    c_in, c_out = x.shape[-1], dy.shape[-1]
    p = jnp.moveaxis(patches, (-2, -1), (0, 1)).reshape(math.prod(window) * c_in, -1)
    return jnp.dot(p, dy.reshape(-1, c_out)).reshape(*window, c_in, c_out)


def _dx_col2im_channels_first(dy, kernel, x_shape, dilations):
    """``dX`` (stride 1) as col2im of ``dP = F dY^T`` laid out channels-first: ``(taps, C_in, N, *out)``.

    Seed 001: the gradient w.r.t. the input is the full convolution of ``dY`` with the rotated kernel;
    here each tap's block of ``dP`` is added into ``dX`` at its offset ``u D`` (contiguous slices).
    """
    nd = dy.ndim - 2
    window, c_in, c_out = kernel.shape[:nd], kernel.shape[-2], kernel.shape[-1]
    n, out = dy.shape[0], dy.shape[1:-1]
    dp = jnp.dot(kernel.reshape(-1, c_out), jnp.moveaxis(dy, -1, 0).reshape(c_out, -1))
    dp = dp.reshape(-1, c_in, n, *out)
    acc = jnp.zeros((c_in, n, *x_shape[1:-1]), dy.dtype)
    for t, offsets in enumerate(itertools.product(*[range(k) for k in window])):
        index = (slice(None), slice(None), *[slice(u * d, u * d + o) for u, d, o in zip(offsets, dilations, out)])
        acc = acc.at[index].add(dp[t])
    return jnp.moveaxis(acc, 0, -1)


def _conv_small_bwd(strides, dilations, res, dy):
    x, kernel = res
    nd = x.ndim - 2
    window = kernel.shape[:nd]
    row = math.prod(window) * kernel.shape[-2]
    unit_stride = all(s == 1 for s in strides)
    # dF: XLA's backward-filter convolution. (``_dkernel_patch_dot`` is 2x faster alone for C_in = 1 but
    # made the whole LeNet step slower in benchmarks/run.py's measurements, so it is not used here.)
    d_kernel = jax.vjp(lambda k: _lax_conv_valid(x, k, strides, dilations), kernel)[1](dy)[0]
    # dX (seed 001: full convolution of dY with the rotated kernel) as col2im when the patch row is short.
    if row <= IM2COL_DX_MAX_TAPS_X_CIN and unit_stride:
        d_x = _dx_col2im_channels_first(dy, kernel, x.shape, dilations)
    elif row <= IM2COL_DX_MAX_TAPS_X_CIN:
        d_x = jax.vjp(lambda v: _im2col_valid(v, kernel, strides, dilations), x)[1](dy)[0]
    else:
        d_x = jax.vjp(lambda v: _lax_conv_valid(v, kernel, strides, dilations), x)[1](dy)[0]
    return d_x, d_kernel


_conv_small_valid.defvjp(_conv_small_fwd, _conv_small_bwd)


def conv_small_channels(x, kernel, bias=None, *, stride=1, padding="VALID", dilation=1, groups: int = 1,
                        pad_mode: str = "constant"):
    """``ops.conv`` (same semantics and checks) tuned for XLA:CPU and few channels, with a custom VJP.

    Forward: XLA's convolution (a shift-and-add ``Y = sum_{u, m} X[p*S + u*D, m] F[u, m, :] + b`` for
    ``prod(k) * C_in <= SHIFT_ADD_MAX_TAPS_X_CIN``, off by default: faster alone, slower inside a step).
    Backward: ``dF`` by XLA's backward-filter convolution; ``dX`` (the full convolution of ``dY`` with the
    rotated kernel, seed 001) as col2im of ``F dY^T`` laid out channels-first when ``prod(k) * C_in <= 256``, else XLA's. ``groups > 1`` falls back to
    :func:`cnnjax.ops.conv`.
    """
    if groups != 1:
        return _conv_op(x, kernel, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                        pad_mode=pad_mode)
    a = prepare_conv(x, kernel, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                     pad_mode=pad_mode)
    x, kernel, bias = a.x, a.kernel, a.bias
    if any(lo or hi for lo, hi in a.pads):
        x = pad(x, a.pads)
    y = _conv_small_valid(x, kernel, a.strides, a.dilations)
    if bias is not None:
        y = y + bias.astype(y.dtype)
    return y
