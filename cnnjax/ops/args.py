"""Argument checks shared by every op in :mod:`cnnjax.ops` (and by the layers): one clear ``ValueError``
naming the argument, its value and what is allowed, raised before any tracing.

Layout conventions of :mod:`cnnjax.ops`: inputs are channels-last ``(N, *spatial, C)`` and kernels
``(*k, C_in / groups, C_out)`` (HWIO for 2-D); ``DIMENSION_NUMBERS`` spells them for ``lax``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

DIMENSION_NUMBERS = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}


def is_int(value) -> bool:
    """A Python or NumPy integer (not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_tuple(value, n: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    """Broadcast an int or a length-``n`` sequence of ints to a tuple; each must be >= ``minimum``."""
    if is_int(value):
        values = (int(value),) * n
    elif (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == n
        and all(is_int(v) for v in value)
    ):
        values = tuple(int(v) for v in value)
    else:
        raise ValueError(f"{name}={value!r} must be an int or a sequence of {n} ints (one per spatial axis)")
    if any(v < minimum for v in values):
        raise ValueError(f"{name}={value!r} must be >= {minimum} in every spatial dimension")
    return values


def check_positive_int(value, name: str) -> int:
    """A Python / NumPy int >= 1."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int")
    return int(value)


def check_window_fits(spatial, window, dilations, pads, what: str = "kernel") -> None:
    """Raise if a (dilated) window is larger than the padded input on some axis."""
    for axis, (size, k, d, (lo, hi)) in enumerate(zip(spatial, window, dilations, pads)):
        if size + lo + hi < d * (k - 1) + 1:
            raise ValueError(
                f"{what} of size {k} (dilation {d}, extent {d * (k - 1) + 1}) on spatial axis {axis} is larger "
                f"than the padded input {size} + {lo} + {hi} = {size + lo + hi}"
            )


def floating_input(x, kernel):
    """Make ``x`` floating (uint8 / int images become the kernel's float type, or float32)."""
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return x
    dtype = kernel.dtype if jnp.issubdtype(kernel.dtype, jnp.inexact) else jnp.float32
    return x.astype(dtype)


def check_ranks(x, kernel, kernel_extra_axes: int = 2, layout: str = "(*k, C_in/groups, C_out)") -> int:
    """Number of spatial axes (1 to 3) implied by ``kernel``; ``x`` must be ``(N, *spatial, C)``."""
    nd = kernel.ndim - kernel_extra_axes
    if nd not in DIMENSION_NUMBERS:
        raise ValueError(
            f"kernel.shape={kernel.shape} must have {kernel_extra_axes + 1} to {kernel_extra_axes + 3} axes {layout}"
        )
    if x.ndim != nd + 2:
        raise ValueError(
            f"x.shape={x.shape} has rank {x.ndim} but kernel.shape={kernel.shape} needs rank {nd + 2} "
            f"(N, {nd} spatial axes, C)"
        )
    if 0 in kernel.shape:
        raise ValueError(f"kernel.shape={kernel.shape} must not have an empty axis {layout}")
    if 0 in x.shape[1:]:
        raise ValueError(f"x.shape={x.shape} must not have an empty spatial or channel axis")
    return nd


def check_groups(groups, c_in: int, c_out: int) -> int:
    """``groups`` as a positive int dividing both channel counts."""
    groups = check_positive_int(groups, "groups")
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide in_channels={c_in}")
    if c_out % groups:
        raise ValueError(f"groups={groups} must divide out_channels={c_out}")
    return groups


def check_bias(bias, c_out: int):
    """``bias`` as an array of shape ``(c_out,)``, or None; a clear error for any other shape."""
    if bias is None:
        return None
    bias = jnp.asarray(bias)
    if bias.shape != (c_out,):
        raise ValueError(f"bias.shape={bias.shape} must be (out_channels,)=({c_out},)")
    return bias
