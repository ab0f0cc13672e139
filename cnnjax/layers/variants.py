"""One switch to pick a convolution variant by name, so models can swap it (ablations, seed 004).

    conv_layer("standard", 64, 3)          # Conv
    conv_layer("separable", 64, 3)         # SeparableConv: depthwise 3x3 then 1x1
    conv_layer("grouped:4", 64, 3)         # Conv(groups=4); 4 must divide the input channels and 64
    conv_layer("dilated:2", 64, 3)         # Conv(dilation=2): a 3x3 kernel spanning 5x5
    conv_layer("deformable", 64, 3)        # DeformConv (Dai et al. 2017)
    conv_layer("deformable_v2", 64, 3)     # DeformConv(modulated=True)
    conv_layer("locally_connected", 64, 3) # LocallyConnected: unshared weights

Bare "grouped" and "dilated" mean "grouped:2" and "dilated:2", so every name in :data:`CONV_VARIANTS`
is itself a valid spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn

from cnnjax.layers.conv import Conv, SeparableConv
from cnnjax.layers.deform import DeformConv
from cnnjax.layers.local import LocallyConnected

CONV_VARIANTS = ("standard", "separable", "grouped", "dilated", "deformable", "deformable_v2", "locally_connected")
_SPEC_FORMS = (
    "standard",
    "separable",
    "grouped:G",
    "dilated:D",
    "deformable",
    "deformable_v2",
    "locally_connected",
)
_DEFAULT_ARG = {"grouped": 2, "dilated": 2}


def parse_conv_variant(variant: str) -> tuple[str, int | None]:
    """Split a spec such as "grouped:4" into ``("grouped", 4)``; ``("standard", None)`` for "standard".

    Raises:
      ValueError: for an unknown name or a bad ``:N`` argument, listing the allowed specs.
    """
    allowed = f"allowed: {', '.join(_SPEC_FORMS)} (G, D positive ints)"
    if not isinstance(variant, str):
        raise ValueError(f"variant={variant!r} must be a string; {allowed}")
    name, sep, arg = variant.strip().partition(":")
    name = name.strip().lower()
    if name not in CONV_VARIANTS:
        raise ValueError(f"variant={variant!r} is unknown; {allowed}")
    if name not in _DEFAULT_ARG:
        if sep:
            raise ValueError(f"variant={variant!r}: {name!r} takes no ':N' argument; {allowed}")
        return name, None
    if not sep:
        return name, _DEFAULT_ARG[name]
    arg = arg.strip()
    if not arg.isdigit() or int(arg) < 1:
        raise ValueError(f"variant={variant!r}: {arg!r} after ':' must be a positive int; {allowed}")
    return name, int(arg)


def conv_layer(
    variant: str,
    features: int,
    kernel_size: int | Sequence[int],
    *,
    strides: int | Sequence[int] = 1,
    padding: Any = "SAME",
    use_bias: bool = True,
    dtype: Any = None,
    name: str | None = None,
) -> nn.Module:
    """Build the convolution layer named by ``variant`` (see the module docstring for the specs).

    All variants map ``(N, *spatial, C_in) -> (N, *out_spatial, features)`` with the same ``kernel_size``,
    ``strides`` and ``padding``, so they can be swapped inside a model. "grouped:G" checks at call time that
    ``G`` divides ``C_in`` and ``features``; "locally_connected" fixes its parameter shapes from the input
    size at ``init``.

    Raises:
      ValueError: unknown spec (listing the allowed ones) or bad ``:N``.
    """
    kind, arg = parse_conv_variant(variant)
    common = dict(features=features, kernel_size=kernel_size, strides=strides, padding=padding, use_bias=use_bias)
    if kind == "standard":
        return Conv(**common, dtype=dtype, name=name)
    if kind == "grouped":
        return Conv(**common, groups=arg, dtype=dtype, name=name)
    if kind == "dilated":
        return Conv(**common, dilation=arg, dtype=dtype, name=name)
    if kind == "separable":
        return SeparableConv(**common, dtype=dtype, name=name)
    if kind == "locally_connected":
        return LocallyConnected(**common, dtype=dtype, name=name)
    return DeformConv(**common, modulated=(kind == "deformable_v2"), dtype=dtype, name=name)
