"""Flax modules that wrap the pure ops: they own parameters, the op does the computation."""

from cnnjax.layers.conv import Conv, ConvTranspose, DepthwiseConv, SeparableConv, he_normal
from cnnjax.layers.deform import DeformConv
from cnnjax.layers.local import LocallyConnected
from cnnjax.layers.normalization import BatchNorm
from cnnjax.layers.pooling import POOLING, AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool, SumPool, pooling
from cnnjax.layers.variants import (
    CONV_VARIANTS,
    STANDARD,
    ConvVariant,
    ModuleDef,
    conv_layer,
    conv_variant,
    parse_conv_variant,
)

__all__ = [
    "Conv",
    "ConvTranspose",
    "DepthwiseConv",
    "SeparableConv",
    "DeformConv",
    "LocallyConnected",
    "BatchNorm",
    "MaxPool",
    "AvgPool",
    "SumPool",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "POOLING",
    "pooling",
    "CONV_VARIANTS",
    "STANDARD",
    "ConvVariant",
    "ModuleDef",
    "conv_variant",
    "conv_layer",
    "parse_conv_variant",
    "he_normal",
]
