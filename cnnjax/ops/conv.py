"""Convolution as the lectures define it: cross-correlation (no kernel flip) plus bias.

Layout conventions used by every op in :mod:`cnnjax.ops`: inputs are channels-last
``(N, *spatial, C)`` and kernels ``(*k, C_in / groups, C_out)`` (HWIO for 2-D).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from jax import lax

from cnnjax.ops.padding import normalize_padding, pad

_DIMENSION_NUMBERS = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}


def as_tuple(value, n: int, name: str) -> tuple[int, ...]:
    """Broadcast an int or a length-``n`` sequence of positive ints to a tuple; validate it."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        values = (value,) * n
    elif isinstance(value, Sequence) and len(value) == n and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        values = tuple(value)
    else:
        raise ValueError(f"{name}={value!r} must be an int or a sequence of {n} ints")
    if any(v < 1 for v in values):
        raise ValueError(f"{name}={value!r} must be >= 1 in every spatial dimension")
    return values


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

    Seeds 000/001/003: ``Y[n, p, k] = sum_{u, m} X[n, p*S + u*D, m] F[u, m, k] + b[k]`` — for a single
    map ``(I*F)[m, n] = sum_ij w[i, j] x[m+i-1, n+j-1] + b``; with ``groups=g`` the input and output
    channels are split in ``g`` groups and group ``j`` of the output only sees group ``j`` of the input.
    Output size per axis: ``floor((H + P_lo + P_hi - D (M - 1) - 1) / S) + 1``.

    Args:
      x: ``(N, *spatial, C_in)``, with 1 to 3 spatial axes.
      kernel: ``(*k, C_in // groups, C_out)``.
      bias: optional ``(C_out,)``.
      stride, dilation: int or one int per spatial axis, >= 1.
      padding: "VALID", "SAME", "FULL", an int, or one int / (lo, hi) pair per spatial axis.
      groups: number of channel groups; must divide ``C_in`` and ``C_out``.
      pad_mode: how padded cells are filled: "constant" (zeros), "edge", "reflect", "wrap".

    Returns:
      ``(N, *out_spatial, C_out)``.
    """
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    nd = kernel.ndim - 2
    if nd not in _DIMENSION_NUMBERS:
        raise ValueError(f"kernel.shape={kernel.shape} must have 3 to 5 axes (*k, C_in/groups, C_out)")
    if x.ndim != nd + 2:
        raise ValueError(
            f"x.shape={x.shape} has rank {x.ndim} but kernel.shape={kernel.shape} needs rank {nd + 2} "
            f"(N, {nd} spatial axes, C)"
        )
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups={groups!r} must be a positive int")
    c_in, c_out = x.shape[-1], kernel.shape[-1]
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide in_channels={c_in}")
    if c_out % groups:
        raise ValueError(f"groups={groups} must divide out_channels={c_out}")
    if kernel.shape[-2] * groups != c_in:
        raise ValueError(
            f"kernel.shape={kernel.shape} needs in_channels/groups={c_in // groups} on axis -2 "
            f"(x has {c_in} channels, groups={groups})"
        )
    strides = as_tuple(stride, nd, "stride")
    dilations = as_tuple(dilation, nd, "dilation")
    window = kernel.shape[:nd]
    pads = normalize_padding(padding, window, dilations)
    spatial = x.shape[1:-1]
    for axis, (size, k, d, (lo, hi)) in enumerate(zip(spatial, window, dilations, pads)):
        if size + lo + hi < d * (k - 1) + 1:
            raise ValueError(
                f"kernel of size {k} (dilation {d}) on axis {axis} is larger than the padded input "
                f"{size} + {lo} + {hi}"
            )
    if bias is not None:
        bias = jnp.asarray(bias)
        if bias.shape != (c_out,):
            raise ValueError(f"bias.shape={bias.shape} must be (out_channels,)=({c_out},)")
    if pad_mode != "constant" and any(lo or hi for lo, hi in pads):
        x = pad(x, pads, mode=pad_mode)
        pads = [(0, 0)] * nd
    elif pad_mode != "constant":
        pad(x[:1, ...], pads, mode=pad_mode)  # validates the mode name
    y = lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype) if x.dtype != kernel.dtype else kernel,
        window_strides=strides,
        padding=pads,
        rhs_dilation=dilations,
        dimension_numbers=_DIMENSION_NUMBERS[nd],
        feature_group_count=groups,
        precision=lax.Precision.HIGHEST,
    )
    if bias is not None:
        y = y + bias.astype(y.dtype)
    return y
