"""Convolution as the lectures define it: cross-correlation (no kernel flip) plus bias.

Layout conventions used by every op in :mod:`cnnjax.ops`: inputs are channels-last ``(N, *spatial, C)`` and
kernels ``(*k, C_in / groups, C_out)`` (HWIO for 2-D). The reference formulation is one call of
``lax.conv_general_dilated`` (:func:`reference_conv`); faster formulations for XLA:CPU live in
:mod:`cnnjax.ops.fast`, which chooses among them (:func:`cnnjax.ops.fast.conv`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import lax

from cnnjax.ops import fast
from cnnjax.ops.args import (
    DIMENSION_NUMBERS,
    as_tuple,
    check_bias,
    check_groups,
    check_ranks,
    check_window_fits,
    floating_input,
)
from cnnjax.ops.arithmetic import output_size
from cnnjax.ops.padding import check_pad_mode, normalize_padding, pad


class ConvArgs(NamedTuple):
    """:func:`conv`'s arguments, checked and normalised by :func:`prepare_conv`."""

    x: Any  # floating, already padded when pad_mode is not "constant"
    kernel: Any  # in x's dtype
    bias: Any  # (C_out,) or None
    nd: int
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]  # zero padding still to apply (all (0, 0) after a non-constant pad)
    groups: int


def prepare_conv(x, kernel, bias, *, stride, padding, dilation, groups, pad_mode) -> ConvArgs:
    """Check :func:`conv`'s arguments (a clear error naming the argument, before any tracing) and
    normalise them; shared with the benchmarks' prototypes (``benchmarks/im2col.py``)."""
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    nd = check_ranks(x, kernel)
    c_in, c_out = x.shape[-1], kernel.shape[-1]
    groups = check_groups(groups, c_in, c_out)
    if kernel.shape[-2] * groups != c_in:
        raise ValueError(
            f"kernel.shape={kernel.shape} needs in_channels/groups={c_in // groups} on axis -2 "
            f"(x has {c_in} channels, groups={groups})"
        )
    strides = as_tuple(stride, nd, "stride")
    dilations = as_tuple(dilation, nd, "dilation")
    check_pad_mode(pad_mode)
    pads = normalize_padding(padding, kernel.shape[:nd], dilations)
    check_window_fits(x.shape[1:-1], kernel.shape[:nd], dilations, pads)
    bias = check_bias(bias, c_out)
    x = floating_input(x, kernel)
    if pad_mode != "constant" and any(lo or hi for lo, hi in pads):
        x = pad(x, pads, mode=pad_mode)
        pads = [(0, 0)] * nd
    kernel = kernel.astype(x.dtype) if x.dtype != kernel.dtype else kernel
    return ConvArgs(x, kernel, bias, nd, strides, dilations, tuple(tuple(p) for p in pads), groups)


def conv(
    x,
    kernel,
    bias=None,
    *,
    stride=1,
    padding="VALID",
    dilation=1,
    groups: int = 1,
    pad_mode: str = "constant",
):
    """N-d convolution (cross-correlation) with bias, for 1-D, 2-D and 3-D inputs.

    Seeds 000/001/003/004: ``Y[n, p, k] = sum_{u, m} X[n, p*S + u*D, m] F[u, m, k] + b[k]`` — for a single
    map ``(I*F)[m, n] = sum_ij w[i, j] x[m+i-1, n+j-1] + b``, for many maps
    ``Y^k_ij = sum_m sum_uv X^m_{i+u-1, j+v-1} F^{mk}_uv + b^k`` (no kernel flip). With ``groups=g``
    (seed 004, grouped convolution) the input and output channels are split in ``g`` groups and group
    ``s`` of the output only sees group ``s`` of the input. Dilation ``D`` inserts ``D - 1`` zeros between
    kernel taps (seed 001/004, atrous convolution).
    Output size per axis: ``floor((H + P_lo + P_hi - D (M - 1) - 1) / S) + 1``.

    Args:
      x: ``(N, *spatial, C_in)``, with 1 to 3 spatial axes. Integer inputs (uint8 images) are converted
        to the kernel's float type.
      kernel: ``(*k, C_in // groups, C_out)``.
      bias: optional ``(C_out,)``.
      stride, dilation: int or one int per spatial axis, >= 1.
      padding: "VALID", "SAME", "FULL", an int, or one int / (lo, hi) pair per spatial axis.
      groups: number of channel groups; must divide ``C_in`` and ``C_out``.
      pad_mode: how padded cells are filled: "constant" (zeros), "edge" (nearest pixel), "reflect"
        (mirror without repeating the edge), "wrap" (circular).

    Returns:
      ``(N, *out_spatial, C_out)`` in ``x``'s (floating) dtype.

    Raises:
      ValueError: rank mismatch, bad stride / dilation / groups / padding / pad_mode, or a kernel larger
        than the padded input — all before any tracing.
    """
    a = prepare_conv(x, kernel, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                     pad_mode=pad_mode)
    y = dispatched_conv(a.x, a.kernel, a.strides, a.pads, a.dilations, a.groups)
    if a.bias is not None:
        y = y + a.bias.astype(y.dtype)
    return y


def reference_conv(x, kernel, strides, pads, dilations, groups=1):
    """The reference: ``Y[n, p, k] = sum_{u, m} Xpad[n, p S + u D, m] F[u, m, k]`` over the group of ``k``,
    as one ``lax.conv_general_dilated`` (``pads``: zero (lo, hi) pairs; ``rhs_dilation`` = ``D``,
    ``feature_group_count`` = groups)."""
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=pads,
        rhs_dilation=dilations,
        dimension_numbers=DIMENSION_NUMBERS[x.ndim - 2],
        feature_group_count=groups,
        precision=lax.Precision.HIGHEST,
    )


def dispatched_conv(x, kernel, strides, pads, dilations, groups=1):
    """:func:`reference_conv`, or the faster formulation :mod:`cnnjax.ops.fast` chooses for these arguments
    (the zero padding applied first where :func:`pad_first` says so)."""
    if pad_first(x.shape, kernel.shape, strides, pads, dilations):
        x, pads = jnp.pad(x, ((0, 0), *pads, (0, 0))), ((0, 0),) * len(pads)
    return fast.conv(x, kernel, strides, pads, dilations, groups, reference_conv)


def pad_first(x_shape, kernel_shape, strides, pads, dilations) -> bool:
    """Whether to zero-pad the input before the conv rather than inside it, to keep clear of two XLA:CPU
    defects that the padded conv's gradient would meet:

    - an output no larger than the (dilated) kernel along some axis, ``O <= D (M - 1) + 1``: XLA:CPU aborts
      the process (a failed check in its algebraic simplifier, "Window dimensions do not match RHS shape")
      compiling the gradient of some of those, e.g. a (2, 1, 6, 6) input, a (2, 2, 6, 9) kernel, stride
      (1, 2), padding ((0, 1), (1, 1)) (one output pixel), or a (2, 8, 4, 8) input, a (2, 4, 8, 1) kernel,
      stride (2, 1), padding ((1, 1), (0, 1)) (two output pixels under a 4-tap kernel);
    - a low padding past the dilated kernel, ``P_lo > D (M - 1)``: the input gradient is then a conv with
      negative low padding ``D (M - 1) - P_lo``, which XLA:CPU's Eigen convolution computes from memory
      outside the input (openxla/xla#48713: garbage values; e.g. a (2, 1, 2, 1) input, a (4, 1, 1, 16)
      kernel, padding ((4, 2), (0, 0))).

    With the padding applied first, both compile and compute right (see ``tests/ops/test_conv_oracle.py``).
    The padding is a copy of the input, small here (the output is at most the kernel's size)."""
    extents = [d * (k - 1) + 1 for k, d in zip(kernel_shape, dilations)]
    outs = map(output_size, x_shape[1:-1], kernel_shape[: len(pads)], strides, pads, dilations)
    small_output = any(o <= e for o, e in zip(outs, extents))
    past_kernel = any(lo > e - 1 for (lo, _), e in zip(pads, extents))
    return any(lo or hi for lo, hi in pads) and (small_output or past_kernel)
