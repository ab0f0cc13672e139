"""Convolution as one matrix product over extracted patches ("im2col"): a baseline formulation for the
benchmarks, not used by cnnjax (``benchmarks.run`` times it against ``ops.conv`` and ``ops.fast``'s
formulations in the full run, and ``benchmarks/lenet_fast.py`` in a LeNet-5 step).

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

import itertools
import math

import jax.numpy as jnp
from jax import lax

from cnnjax.ops.args import as_tuple
from cnnjax.ops.conv import prepare_conv


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
    loses for 3x3x16 ResNet convs, so ``ops.conv`` does not use it.
    """
    del x_shape
    taps = math.prod(kernel_shape[:-2])
    return groups == 1 and taps * kernel_shape[-2] <= 256
