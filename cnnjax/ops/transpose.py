"""Transposed convolution: the adjoint of :func:`cnnjax.ops.conv` with respect to its input (seed 004)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from cnnjax.ops import fast
from cnnjax.ops.args import DIMENSION_NUMBERS, as_tuple, check_bias, check_positive_int, check_ranks, floating_input
from cnnjax.ops.conv import reference_conv


def conv_transpose(
    x,
    kernel,
    bias=None,
    *,
    stride=1,
    padding=0,
    output_padding=0,
    dilation=1,
    groups: int = 1,
):
    """Transposed convolution (PyTorch ``ConvTranspose`` convention), seed 004.

    Seed 004: insert ``S - 1`` zeros between neighbouring input elements, then convolve. Precisely,
    ``conv_transpose(., F)`` is the adjoint (vector-Jacobian product) of ``y -> conv(y, F, stride=S,
    padding=P, dilation=D, groups=g)``: ``<conv(y, F), x> = <y, conv_transpose(x, F)>``, i.e.
    ``Y[n, o] = sum_{u, i : o = i S + u D - P} X[n, i] F[u]^T + b`` (each input cell scatters a
    copy of the kernel, weighted by its value). It is computed as a convolution of the zero-inserted input
    (``lhs_dilation = S``) with the kernel rotated by 180 degrees and its channel axes swapped, padded by
    ``D (M - 1) - P`` below and ``D (M - 1) - P + output_padding`` above.
    Output size: ``(H - 1) S - 2 P + D (M - 1) + output_padding + 1``.

    Args:
      x: ``(N, *spatial, C_in)``, 1 to 3 spatial axes.
      kernel: ``(*k, C_out // groups, C_in)`` — the kernel of the convolution being transposed (which maps
        ``C_out`` channels to ``C_in``), i.e. PyTorch's ``ConvTranspose`` weight ``(C_in, C_out/g, *k)``
        with its axes moved.
      bias: optional ``(C_out,)``.
      stride, dilation: int or one int per spatial axis, >= 1.
      padding: int or one int per axis, >= 0: removes ``padding`` cells from both ends of the output.
      output_padding: int or one int per axis, ``0 <= output_padding < max(stride, dilation)``: extra cells
        at the end, choosing among the input sizes that ``conv`` maps to the same output size.
      groups: must divide ``C_in`` and ``C_out``.

    Returns:
      ``(N, *out_spatial, C_out)``.
    """
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    nd = check_ranks(x, kernel, layout="(*k, C_out/groups, C_in)")
    groups = check_positive_int(groups, "groups")
    c_in = x.shape[-1]
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide in_channels={c_in}")
    if kernel.shape[-1] != c_in:
        raise ValueError(
            f"kernel.shape={kernel.shape} must be (*k, C_out/groups, C_in) with C_in={c_in} on its last axis "
            f"(x.shape={x.shape})"
        )
    c_out = kernel.shape[-2] * groups
    strides = as_tuple(stride, nd, "stride")
    dilations = as_tuple(dilation, nd, "dilation")
    pads = as_tuple(padding, nd, "padding", minimum=0)
    out_pads = as_tuple(output_padding, nd, "output_padding", minimum=0)
    window = kernel.shape[:nd]
    for axis, (s, d, op) in enumerate(zip(strides, dilations, out_pads)):
        if op >= max(s, d):
            raise ValueError(
                f"output_padding={output_padding!r} must be smaller than stride or dilation on every axis "
                f"(axis {axis}: output_padding {op}, stride {s}, dilation {d})"
            )
    for axis, (h, k, s, d, p, op) in enumerate(zip(x.shape[1:-1], window, strides, dilations, pads, out_pads)):
        size = (h - 1) * s - 2 * p + d * (k - 1) + op + 1
        if size < 1:
            raise ValueError(
                f"padding={padding!r} is too large: the output would have size {size} on spatial axis {axis}"
            )
    bias = check_bias(bias, c_out)
    x = floating_input(x, kernel)
    # (*k, C_out/g, C_in) -> (*k, C_in/g, C_out), group-wise: out channel s*C_out/g + o' sees in group s.
    kernel = kernel.astype(x.dtype)
    k_out = kernel.shape[-2]
    rhs = kernel.reshape(*window, k_out, groups, c_in // groups)
    rhs = jnp.swapaxes(rhs, -1, -3).reshape(*window, c_in // groups, c_out)
    rhs = jnp.flip(rhs, axis=tuple(range(nd)))
    conv_pads = [
        (d * (k - 1) - p, d * (k - 1) - p + op) for k, d, p, op in zip(window, dilations, pads, out_pads)
    ]
    y = fast.conv_transpose(x, rhs, strides, conv_pads, dilations, groups, _reference, reference_conv)
    if bias is not None:
        y = y + bias.astype(y.dtype)
    return y


def _reference(x, rhs, strides, pads, dilations, groups):
    """The zero insertion as ``lhs_dilation``: one ``lax.conv_general_dilated``."""
    return lax.conv_general_dilated(
        x,
        rhs,
        window_strides=(1,) * len(strides),
        padding=pads,
        lhs_dilation=strides,
        rhs_dilation=dilations,
        dimension_numbers=DIMENSION_NUMBERS[x.ndim - 2],
        feature_group_count=groups,
        precision=lax.Precision.HIGHEST,
    )
