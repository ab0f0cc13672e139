"""A small VGG-style network for 28x28 images (under 100,000 parameters): the ``fashion_small`` model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.layers import STANDARD, GlobalAvgPool, MaxPool, ModuleDef
from cnnjax.models.common import batch_norm, check_input, require_module_defs

#: Heads between the last stage and the classifier.
HEADS = ("gap", "flatten")


class SmallCNN(nn.Module):
    """Stages of two 3x3 conv -> BatchNorm -> ReLU, a 2x2 max-pool after each stage, dropout, then
    the head and a dense classifier.

    ``head="gap"`` averages each feature map (global average pooling); ``head="flatten"`` keeps the
    spatial layout and feeds the whole last feature map to the classifier (more parameters: the
    classifier has ``H * W * C * num_classes`` weights).
    With ``widths=(32, 64)`` and 10 classes: 65,834 parameters ("gap"), 96,554 on 28x28 images ("flatten").
    """

    num_classes: int = 10
    widths: Sequence[int] = (32, 64)
    convs_per_stage: int = 2
    dropout: float = 0.1
    conv: ModuleDef = STANDARD  # every conv but the first (which sees the image)
    pool: ModuleDef = MaxPool  # the 2x2 subsampling after each stage
    head: str = "gap"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.head not in HEADS:
            raise ValueError(f"small_cnn: head={self.head!r} is unknown; allowed: {', '.join(HEADS)}")
        require_module_defs("small_cnn", conv=self.conv, pool=self.pool)
        check_input(x, "small_cnn", min_size=2 ** len(self.widths))
        x = x.astype(self.dtype)
        for s, width in enumerate(self.widths):
            for i in range(self.convs_per_stage):
                make = STANDARD if (s == 0 and i == 0) else self.conv
                x = make(width, 3, use_bias=False, dtype=self.dtype, name=f"conv{s}_{i}")(x)
                x = nn.relu(batch_norm(train, self.dtype, name=f"bn{s}_{i}")(x))
            x = self.pool(2)(x)
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = GlobalAvgPool()(x) if self.head == "gap" else x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(x).astype(jnp.float32)
