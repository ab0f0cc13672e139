"""Inception module (Szegedy et al. 2015, GoogLeNet; seed 001) and a small GoogLeNet-style classifier.

Seed 001: a GoogLeNet layer concatenates the outputs of 1x1, 3x3 and 5x5 convolutions and of a 3x3
max-pooling; the 3x3 and 5x5 branches are preceded by 1x1 "reductions", the pool branch is followed by a
1x1 projection (all SAME-padded, stride 1, so the maps line up for the channel concatenation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.layers import STANDARD, GlobalAvgPool, MaxPool, ModuleDef
from cnnjax.models.common import batch_norm, check_input, require_module_defs


class InceptionModule(nn.Module):
    """``concat[1x1, 1x1 -> 3x3, 1x1 -> 5x5, maxpool 3x3/1 -> 1x1]`` along channels.

    Output channels: ``c1 + c3 + c5 + pool_proj``. Each conv is followed by BatchNorm (when
    ``batch_norm``) and ReLU. ``conv`` (a :data:`cnnjax.layers.ModuleDef`) builds the 3x3 and 5x5 convs.
    """

    c1: int
    c3_reduce: int
    c3: int
    c5_reduce: int
    c5: int
    pool_proj: int
    conv: ModuleDef = STANDARD
    batch_norm: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        def unit(features, kernel, name, y):
            make = self.conv if kernel > 1 else STANDARD
            y = make(features, kernel, padding="SAME", use_bias=not self.batch_norm, dtype=self.dtype, name=name)(y)
            if self.batch_norm:
                y = batch_norm(train, self.dtype, name + "_bn")(y)
            return nn.relu(y)

        b1 = unit(self.c1, 1, "branch1x1", x)
        b3 = unit(self.c3, 3, "branch3x3", unit(self.c3_reduce, 1, "branch3x3_reduce", x))
        b5 = unit(self.c5, 5, "branch5x5", unit(self.c5_reduce, 1, "branch5x5_reduce", x))
        bp = unit(self.pool_proj, 1, "branch_pool_proj", MaxPool(3, 1, "SAME", name="branch_pool")(x))
        return jnp.concatenate([b1, b3, b5, bp], axis=-1)


# GoogLeNet's 3a, 3b, 4a at a quarter of the width: (c1, c3_reduce, c3, c5_reduce, c5, pool_proj); "M" = max-pool.
SMALL_BLOCKS = (
    (16, 24, 32, 4, 8, 8),  # 3a -> 64 channels
    (32, 32, 48, 8, 24, 16),  # 3b -> 120
    "M",
    (48, 24, 52, 4, 12, 16),  # 4a -> 128
    (40, 28, 56, 6, 16, 16),  # 4b -> 128
)


class SmallGoogLeNet(nn.Module):
    """Stem conv 3x3 + BN + ReLU -> 3x3/2 max-pool -> Inception blocks (``"M"`` = 3x3/2 max-pool) ->
    global average pool -> dense logits. Default: 3a, 3b, pool, 4a, 4b of GoogLeNet at 1/4 width
    (87,918 parameters for 1-channel input and 10 classes); fits 28x28 or 32x32 inputs.
    """

    num_classes: int = 10
    stem_width: int = 32
    blocks: Sequence[Any] = SMALL_BLOCKS
    conv: ModuleDef = STANDARD
    conv_stem: bool = False
    batch_norm: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        require_module_defs("inception", conv=self.conv)
        for i, block in enumerate(self.blocks):
            if block != "M" and not (isinstance(block, Sequence) and len(block) == 6):
                raise ValueError(
                    f"inception: blocks[{i}]={block!r} must be 'M' or 6 ints (c1, c3_reduce, c3, c5_reduce, c5, pool_proj)"
                )
        check_input(x, "inception", 1)
        x = x.astype(self.dtype)
        stem = self.conv if self.conv_stem else STANDARD
        x = stem(self.stem_width, 3, padding="SAME", use_bias=not self.batch_norm, dtype=self.dtype, name="stem")(x)
        if self.batch_norm:
            x = batch_norm(train, self.dtype, "stem_bn")(x)
        x = nn.relu(x)
        x = MaxPool(3, 2, "SAME", name="stem_pool")(x)
        for i, block in enumerate(self.blocks):
            if block == "M":
                x = MaxPool(3, 2, "SAME", name=f"pool{i}")(x)
            else:
                x = InceptionModule(
                    *block, conv=self.conv, batch_norm=self.batch_norm, dtype=self.dtype, name=f"inception{i}"
                )(x, train)
        x = GlobalAvgPool(name="avgpool")(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(x).astype(jnp.float32)
