"""LeNet-5 (LeCun et al. 1998): the modern form (ReLU, max-pool, softmax) and the classic one.

Seeds 000/001: input 32x32, C1 conv, S2 subsampling, C3 partially connected conv, S4, C5, F6, output.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.layers import STANDARD, AvgPool, MaxPool, ModuleDef, he_normal
from cnnjax.layers.partial import LENET5_C3_TABLE, PartialConv, validate_table
from cnnjax.models.common import check_input, min_input_size, require_module_defs


class LeNet5(nn.Module):
    """conv 5x5x6 SAME -> max-pool 2 -> conv 5x5x16 VALID -> max-pool 2 -> dense 120 -> 84 -> classes.

    61,706 parameters for 28x28x1 input and 10 classes. Returns float32 logits (softmax is in the loss).
    Minimum input 12x12 (with the standard conv; a dilated conv2 needs more, which conv2 itself reports).
    ``conv`` (a :data:`cnnjax.layers.ModuleDef`) builds conv2, and conv1 too with ``conv_stem``; ``pool``
    (``MaxPool``, or e.g. ``AvgPool``) is the 2x2 subsampling after each conv.
    ``dropout`` > 0 drops that fraction of the inputs of fc1, fc2 and the logits layer while training
    (no parameters; 0, the default, is the plain network).
    """

    num_classes: int = 10
    conv: ModuleDef = STANDARD
    conv_stem: bool = False
    pool: ModuleDef = MaxPool
    dropout: float = 0.0
    dtype: Any = jnp.float32

    #: conv 5 SAME -> pool 2 -> conv 5 VALID -> pool 2, as (kernel, stride, padding, dilation).
    MIN_INPUT_SIZE = min_input_size([(5, 1, "SAME", 1), (2, 2, "VALID", 1), (5, 1, "VALID", 1), (2, 2, "VALID", 1)])

    @nn.compact
    def __call__(self, x, train: bool = False):
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lenet5: dropout={self.dropout!r} must be in [0, 1)")
        require_module_defs("lenet5", conv=self.conv, pool=self.pool)
        check_input(x, "lenet5", self.MIN_INPUT_SIZE)
        x = x.astype(self.dtype)
        stem = self.conv if self.conv_stem else STANDARD
        x = nn.relu(stem(6, 5, padding="SAME", dtype=self.dtype, name="conv1")(x))
        x = self.pool(2, name="pool1")(x)
        x = nn.relu(self.conv(16, 5, padding="VALID", dtype=self.dtype, name="conv2")(x))
        x = self.pool(2, name="pool2")(x)
        x = x.reshape(x.shape[0], -1)
        drop = nn.Dropout(self.dropout, deterministic=not train) if self.dropout > 0 else (lambda v: v)
        x = nn.relu(nn.Dense(120, kernel_init=he_normal, dtype=self.dtype, name="fc1")(drop(x)))
        x = nn.relu(nn.Dense(84, kernel_init=he_normal, dtype=self.dtype, name="fc2")(drop(x)))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(drop(x)).astype(jnp.float32)


# ------------------------------------------------------------------------------------------- classic LeNet-5


def lecun_tanh(x):
    """The paper's squashing function ``f(a) = A tanh(S a)`` with ``A = 1.7159``, ``S = 2/3`` (so f(1) ~ 1)."""
    return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


def lecun98_uniform():
    """Appendix C initialisation: uniform in ``(-2.4 / F_i, 2.4 / F_i)``, ``F_i`` = fan-in of the unit.

    The fan-in is the product of all axes but the last (kernels, dense weights, partial-conv kernels).
    """

    def init(key, shape, dtype=jnp.float32):
        fan_in = max(1, math.prod(shape[:-1]))
        bound = 2.4 / fan_in
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def rbf_codes(num_classes: int, dim: int = 84, seed: int = 0) -> np.ndarray:
    """Fixed +-1 codes of the RBF output units, one row per class (not trainable).

    The paper drew each digit's code as a stylised 7x12 bitmap of the character; here the codes are
    deterministic random +-1 vectors (``numpy`` RandomState(``seed``)), which keeps the codes maximally
    distinct for any number of classes.
    """
    rs = np.random.RandomState(seed)
    return np.where(rs.rand(num_classes, dim) < 0.5, -1.0, 1.0).astype(np.float32)


class TrainableSubsampling(nn.Module):
    """S2/S4 of LeNet-5: ``y[c] = coefficient[c] * avg_pool_2x2(x)[c] + bias[c]`` (2 parameters per map).

    The squashing function is applied by the caller.
    """

    window: int = 2

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        coef = self.param("coefficient", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        pooled = AvgPool(self.window, name="pool")(x)
        return pooled * coef.astype(x.dtype) + bias.astype(x.dtype)


class EuclideanRBF(nn.Module):
    """Output layer of LeNet-5: ``y_i = sum_j (x_j - w_ij)^2`` with fixed codes ``w_i`` in {-1, +1}^84."""

    num_classes: int = 10
    seed: int = 0

    def __call__(self, x):
        codes = jnp.asarray(rbf_codes(self.num_classes, x.shape[-1], self.seed), x.dtype)
        return jnp.sum((x[:, None, :] - codes[None, :, :]) ** 2, axis=-1)


class LeNet5Classic(nn.Module):
    """LeNet-5 as published (LeCun, Bottou, Bengio, Haffner 1998, "Gradient-based learning ...").

    Input up to 32x32 (a 28x28 image is centred in a 32x32 field by zero padding, 2 pixels per side);
    with ``normalize_input`` pixel values in [0, 1] are mapped to the paper's range [-0.1, 1.175].
    Layers: C1 conv 6@5x5 -> S2 trainable subsampling -> C3 partially connected 16@5x5 (Table I) ->
    S4 -> C5 conv 120@5x5 -> F6 dense 84, each followed by ``1.7159 tanh(2a/3)``, then Euclidean RBF units
    with fixed +-1 codes. Trainable parameters: C1 156 + S2 12 + C3 1,516 + S4 32 + C5 48,120 + F6 10,164
    = 60,000 (for 10 classes; the RBF codes are constants).

    Output: the RBF units compute squared distances ``y_i = ||f6 - w_i||^2``; the model returns
    ``-y_i`` so it can be used as logits: the predicted class is the argmax (the nearest code), and the
    softmax cross-entropy of ``-y`` is ``y_D + log sum_i exp(-y_i)``, which is the paper's MAP criterion
    (eq. 9) without its constant ``e^{-j}`` term.

    ``connection_table``: the S2->C3 table, ``(6, 16)`` 0/1; ``None`` makes C3 a full conv. ``conv``
    builds C5 (and C3 when the table is ``None``; C1 with ``conv_stem``); a dilated one does not fit the
    32x32 geometry (C5's 5x5 window would span more than S4's 5x5 maps), which C5 reports at init.
    """

    num_classes: int = 10
    connection_table: Any = "lecun"
    normalize_input: bool = True
    conv: ModuleDef = STANDARD
    conv_stem: bool = False
    rbf_seed: int = 0
    dtype: Any = jnp.float32

    def table(self):
        if isinstance(self.connection_table, str):
            if self.connection_table != "lecun":
                raise ValueError(
                    f"lenet5_classic: connection_table={self.connection_table!r} is unknown; "
                    "use 'lecun', None (full) or a (6, 16) 0/1 array"
                )
            return LENET5_C3_TABLE
        if self.connection_table is None:
            return None
        return validate_table(self.connection_table, 6, 16)

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train
        table = self.table()
        require_module_defs("lenet5_classic", conv=self.conv)
        check_input(x, "lenet5_classic", 1, 32)
        x = x.astype(self.dtype)
        h, w = x.shape[1:3]
        x = jnp.pad(
            x, ((0, 0), ((32 - h) // 2, 32 - h - (32 - h) // 2), ((32 - w) // 2, 32 - w - (32 - w) // 2), (0, 0))
        )
        if self.normalize_input:
            x = x * 1.275 - 0.1
        init = lecun98_uniform()
        conv = functools.partial(self.conv, padding="VALID", dtype=self.dtype, kernel_init=init)
        stem = functools.partial(self.conv if self.conv_stem else STANDARD, padding="VALID", dtype=self.dtype,
                                 kernel_init=init)
        x = lecun_tanh(stem(6, 5, name="C1")(x))
        x = lecun_tanh(TrainableSubsampling(name="S2")(x))
        if table is None:
            x = conv(16, 5, name="C3")(x)
        else:
            x = PartialConv(table, 16, 5, padding="VALID", kernel_init=init, dtype=self.dtype, name="C3")(x)
        x = lecun_tanh(x)
        x = lecun_tanh(TrainableSubsampling(name="S4")(x))
        x = lecun_tanh(conv(120, 5, name="C5")(x))
        x = x.reshape(x.shape[0], -1)
        x = lecun_tanh(nn.Dense(84, kernel_init=init, dtype=self.dtype, name="F6")(x))
        distances = EuclideanRBF(self.num_classes, self.rbf_seed, name="output")(x)
        return (-distances).astype(jnp.float32)
