"""The conv-variant registry: one switch that turns a spec string into a convolution module factory.

A model takes its convolution as a constructor argument (flax's ``conv: ModuleDef`` habit) and calls it
like :class:`cnnjax.layers.Conv`::

    conv = conv_variant("grouped:4")             # resolved once, where the model is built (get_model)
    layer = conv(64, 3, strides=1, padding="SAME", use_bias=False, name="conv2")   # inside the model

The specs (``CONV_VARIANTS`` holds the names; the module each one builds):

    "standard"            Conv
    "depthwise"           DepthwiseConv(features=K): every filter sees one input channel (K >= C_in)
    "separable"           SeparableConv: depthwise k x k, then 1 x 1
    "grouped:G"           Conv(groups=G); G must divide the input channels and K
    "dilated:D"           Conv(dilation=D): a k x k kernel spanning D (k - 1) + 1
    "deformable"          DeformConv (Dai et al. 2017)
    "deformable_v2"       DeformConv(modulated=True) (Zhu et al. 2019)
    "locally_connected"   LocallyConnected: unshared weights, parameter shapes fixed by the input size at init

Bare "grouped" and "dilated" mean "grouped:2" and "dilated:2", so every name is itself a valid spec.
Whether a variant fits the layer it replaces (e.g. G dividing the channels) is checked by the layer when
it is initialised, with the layer's path in the message (:func:`cnnjax.layers.conv.names_the_layer`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn

from cnnjax.layers.conv import Conv, DepthwiseConv, SeparableConv
from cnnjax.layers.deform import DeformConv
from cnnjax.layers.local import LocallyConnected

#: A module factory called like :class:`cnnjax.layers.Conv`: ``conv(features, kernel_size, *, strides,
#: padding, use_bias, dtype, name, kernel_init) -> nn.Module`` (flax's ``ModuleDef``).
ModuleDef = Callable[..., nn.Module]


class _Variant(NamedTuple):
    module: type[nn.Module]
    options: Callable[[int | None], dict[str, Any]]  # constructor arguments fixed by the spec (and its ":N")
    arg_letter: str | None  # "G" / "D" for the variants that take ":N", else None
    conv_kernel: bool  # the main kernel has Conv's (*k, C_in / groups, K) layout, so a model's kernel_init fits


CONV_VARIANTS: dict[str, _Variant] = {
    "standard": _Variant(Conv, lambda _: {}, None, True),
    "depthwise": _Variant(DepthwiseConv, lambda _: {}, None, False),
    "separable": _Variant(SeparableConv, lambda _: {}, None, False),
    "grouped": _Variant(Conv, lambda g: {"groups": g}, "G", True),
    "dilated": _Variant(Conv, lambda d: {"dilation": d}, "D", True),
    "deformable": _Variant(DeformConv, lambda _: {}, None, True),
    "deformable_v2": _Variant(DeformConv, lambda _: {"modulated": True}, None, True),
    "locally_connected": _Variant(LocallyConnected, lambda _: {}, None, False),
}
_DEFAULT_ARG = 2  # bare "grouped" / "dilated"
_ALLOWED = ", ".join(f"{n}:{v.arg_letter}" if v.arg_letter else n for n, v in CONV_VARIANTS.items())


def parse_conv_variant(spec: str) -> tuple[str, int | None]:
    """Split a spec such as "grouped:4" into ``("grouped", 4)``; ``("standard", None)`` for "standard".

    Raises:
      ValueError: a non-string, an unknown name or a bad ``:N`` argument, listing the allowed specs.
    """
    allowed = f"allowed: {_ALLOWED} (G, D positive ints)"
    if not isinstance(spec, str):
        raise ValueError(f"conv={spec!r} must be a spec string; {allowed}")
    name, sep, arg = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in CONV_VARIANTS:
        raise ValueError(f"conv={spec!r} is unknown; {allowed}")
    if CONV_VARIANTS[name].arg_letter is None:
        if sep:
            raise ValueError(f"conv={spec!r}: {name!r} takes no ':N' argument; {allowed}")
        return name, None
    if not sep:
        return name, _DEFAULT_ARG
    arg = arg.strip()
    if not arg.isdigit() or int(arg) < 1:
        raise ValueError(f"conv={spec!r}: {arg!r} after ':' must be a positive int; {allowed}")
    return name, int(arg)


@dataclasses.dataclass(frozen=True)
class ConvVariant:
    """A parsed conv-variant spec; calling it builds the layer (a :data:`ModuleDef`). ``str()`` gives the spec.

    Every variant maps ``(N, *spatial, C_in) -> (N, *out_spatial, features)`` with the same
    ``kernel_size``, ``strides`` and ``padding``, so a model can swap it. ``kernel_init`` (a model's choice
    for its convolutions, e.g. ResNet's fan-out He normal) is given to the variants whose kernel has
    Conv's ``(*k, C_in / groups, K)`` layout (standard, grouped, dilated, deformable); depthwise,
    separable and locally connected kernels have other layouts and keep their own He initialisers.
    """

    kind: str
    arg: int | None = None

    def __call__(
        self,
        features: int,
        kernel_size: int | Sequence[int],
        *,
        strides: int | Sequence[int] = 1,
        padding: Any = "SAME",
        use_bias: bool = True,
        dtype: Any = None,
        name: str | None = None,
        kernel_init: Any = None,
    ) -> nn.Module:
        variant = CONV_VARIANTS[self.kind]
        kwargs = dict(features=features, kernel_size=kernel_size, strides=strides, padding=padding)
        kwargs.update(use_bias=use_bias, dtype=dtype, name=name, **variant.options(self.arg))
        if kernel_init is not None and variant.conv_kernel:
            kwargs["kernel_init"] = kernel_init
        return variant.module(**kwargs)

    def __str__(self) -> str:
        return self.kind if self.arg is None else f"{self.kind}:{self.arg}"


def conv_variant(spec: str) -> ConvVariant:
    """The module factory for a spec string (see the module docstring); raises :func:`parse_conv_variant`'s error."""
    return ConvVariant(*parse_conv_variant(spec))


#: The standard convolution as a :class:`ConvVariant` (the models' default ``conv``).
STANDARD = ConvVariant("standard")


def conv_layer(variant: str, features: int, kernel_size: int | Sequence[int], **kwargs) -> nn.Module:
    """``conv_variant(variant)(features, kernel_size, **kwargs)``: one layer of the named variant."""
    return conv_variant(variant)(features, kernel_size, **kwargs)
