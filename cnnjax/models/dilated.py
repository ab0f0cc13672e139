"""Seed 001's example network: dilated 3x3 convs, 3x3/2 max-pools, a dense logistic output.

The seed's neon program::

    Conv(fshape=(3, 3, 32), padding=2, strides=1, dilation=2, activation=Rectlin())
    Pooling(fshape=(3, 3), padding=1, strides=2, op='max')
    Conv(fshape=(3, 3, 64), padding=2, strides=1, dilation=2, activation=Rectlin())
    Pooling(fshape=(3, 3), padding=1, strides=2, op='max')
    Affine(nout=class_count, activation=Logistic())      cost: CrossEntropyBinary

How the output is meant to be used: the model returns the Affine layer's pre-activation ``z`` (float32
logits), like every model in the zoo, so the standard softmax cross-entropy training loop works as is.
The seed's form is one independent logistic unit per class, ``p_k = sigmoid(z_k)``, trained with binary
cross-entropy against one-hot targets: train with ``config.loss = "sigmoid_binary_cross_entropy"``
(``cnnjax.training.steps``, numerically stable, on logits); ``jax.nn.sigmoid(z)`` gives the units'
probabilities. The predicted class is ``argmax z`` either way. The seed's input
normaliser (``divisor=128``, for 0..255 pixels) is not needed here: cnnjax images are already in [0, 1].
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.layers import MaxPool, ModuleDef, conv_variant
from cnnjax.models.common import check_input, require_module_defs

#: The seed's convolution: 3x3, dilation 2.
SEED_CONV = conv_variant("dilated:2")


class DilatedCNN(nn.Module):
    """Seed 001's example net (see the module docstring). Returns float32 logits ``z``.

    ``conv`` (default "dilated:2", the seed's conv) builds conv2, and conv1 too when ``conv_stem``
    (default True: in the seed both convs are dilated); with ``conv_stem=False`` conv1 stays "dilated:2".
    """

    num_classes: int = 10
    conv: ModuleDef = SEED_CONV
    pool: ModuleDef = MaxPool  # the seed's 3x3/2 max-pooling (padding 1)
    conv_stem: bool = True
    widths: tuple[int, int] = (32, 64)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train
        require_module_defs("dilated_cnn", conv=self.conv, pool=self.pool)
        check_input(x, "dilated_cnn", 1)
        x = x.astype(self.dtype)
        stem = self.conv if self.conv_stem else SEED_CONV
        x = nn.relu(stem(self.widths[0], 3, padding="SAME", dtype=self.dtype, name="conv1")(x))
        x = self.pool(3, 2, 1, name="pool1")(x)
        x = nn.relu(self.conv(self.widths[1], 3, padding="SAME", dtype=self.dtype, name="conv2")(x))
        x = self.pool(3, 2, 1, name="pool2")(x)
        x = x.reshape(x.shape[0], -1)
        z = nn.Dense(self.num_classes, kernel_init=nn.initializers.xavier_uniform(), dtype=self.dtype, name="output")(x)
        return z.astype(jnp.float32)
