"""LeNet-5 (LeCun et al. 1998), modern form: ReLU, max-pooling, softmax output."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from cnnjax import ops
from cnnjax.layers import Conv, he_normal


class LeNet5(nn.Module):
    """conv 5x5x6 SAME -> max-pool 2 -> conv 5x5x16 VALID -> max-pool 2 -> dense 120 -> 84 -> classes.

    61,706 parameters for 28x28x1 input and 10 classes. Returns logits (softmax is in the loss).
    """

    num_classes: int = 10
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train  # no dropout or BatchNorm in the plain LeNet-5
        x = x.astype(self.dtype)
        x = nn.relu(Conv(6, 5, padding="SAME", dtype=self.dtype, name="conv1")(x))
        x = ops.max_pool(x, 2)
        x = nn.relu(Conv(16, 5, padding="VALID", dtype=self.dtype, name="conv2")(x))
        x = ops.max_pool(x, 2)
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(120, kernel_init=he_normal, dtype=self.dtype, name="fc1")(x))
        x = nn.relu(nn.Dense(84, kernel_init=he_normal, dtype=self.dtype, name="fc2")(x))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(x).astype(jnp.float32)
