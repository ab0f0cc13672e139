"""Partially connected convolution: output map ``k`` only sees the input maps its connection table allows.

Seed 001 ("Особенность соединения слоев"): the maps of a subsampling layer and the next conv layer are
connected selectively, according to an adjacency matrix that is a parameter of the network; each output
map is a partial sum of convolutions of its own input maps, each with its own kernel:

    Y[k] = sum_{m : T[m, k] = 1} X[m] * F[m, k] + b[k]

LeNet-5's C3 layer (LeCun et al. 1998, Table I) is the classic instance: 6 S2 maps -> 16 C3 maps with 60
connections, so ``60 * 25 + 16 = 1,516`` trainable parameters instead of ``(6 * 25 + 1) * 16 = 2,416``.
Only the connected kernels are parameters (``kernel`` has shape ``(*k, n_connections)``); they are
scattered into a dense ``(*k, C_in, C_out)`` kernel whose other entries are fixed zeros, then
:func:`cnnjax.ops.conv` runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from cnnjax import ops
from cnnjax.layers.conv import he_normal, kernel_window, names_the_layer

# LeNet-5, Table I: rows = S2 maps (inputs), columns = C3 maps (outputs). C3 maps 0-5 see 3 contiguous
# S2 maps, 6-11 see 4 contiguous, 12-14 see 4 non-contiguous, 15 sees all six.
_LENET5_COLUMNS = (
    [[(j + i) % 6 for i in range(3)] for j in range(6)]
    + [[(j + i) % 6 for i in range(4)] for j in range(6)]
    + [[0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5]]
    + [list(range(6))]
)
LENET5_C3_TABLE = np.zeros((6, 16), dtype=bool)
for _k, _inputs in enumerate(_LENET5_COLUMNS):
    LENET5_C3_TABLE[_inputs, _k] = True
LENET5_C3_TABLE.setflags(write=False)

# Seed 001's example: 7 maps in the subsampling layer, 9 in the next conv layer (rows = inputs).
SEED001_TABLE = np.array(
    [
        [1, 0, 0, 0, 0, 1, 1, 1, 0],
        [1, 1, 0, 0, 0, 0, 1, 1, 1],
        [1, 1, 1, 0, 0, 0, 0, 1, 1],
        [0, 1, 1, 1, 0, 0, 0, 1, 1],
        [0, 0, 1, 1, 1, 0, 0, 0, 1],
        [0, 0, 0, 1, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 0, 0],
    ],
    dtype=bool,
)
SEED001_TABLE.setflags(write=False)


def validate_table(table, in_channels: int | None = None, features: int | None = None) -> np.ndarray:
    """The connection table as a ``(C_in, C_out)`` bool array; checks shape, 0/1 entries and coverage."""
    arr = np.asarray(table)
    if arr.ndim != 2:
        raise ValueError(f"table.shape={arr.shape} must be 2-D (in_channels, out_channels)")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError("table entries must be 0/1 (or booleans): T[m, k] = 1 connects input m to output k")
    arr = arr.astype(bool)
    if in_channels is not None and arr.shape[0] != in_channels:
        raise ValueError(f"table has {arr.shape[0]} rows but the input has in_channels={in_channels}")
    if features is not None and arr.shape[1] != features:
        raise ValueError(f"table has {arr.shape[1]} columns but features={features}")
    empty = np.flatnonzero(~arr.any(axis=0))
    if empty.size:
        raise ValueError(f"table columns {empty.tolist()} connect no input map: every output map needs one")
    return arr


class PartialConv(nn.Module):
    """Convolution with a fixed input->output connection table (seed 001; LeNet-5's C3).

    ``Y[k] = sum_{m : T[m, k]} X[m] * F[m, k] + b[k]``. Parameters: ``kernel`` ``(*k, n_connections)``
    (connections in row-major order of the table, i.e. ``np.nonzero(table)``) and ``bias`` ``(C_out,)``;
    ``n_connections * prod(k) + C_out`` in all.

    Attributes:
      features: output maps ``C_out``; defaults to the table's column count.
      table: ``(C_in, C_out)`` 0/1 matrix, rows = input maps, columns = output maps.
    """

    table: Any
    features: int | None = None
    kernel_size: int | Sequence[int] = 5
    strides: int | Sequence[int] = 1
    padding: Any = "VALID"
    use_bias: bool = True
    kernel_init: Any = he_normal
    bias_init: Any = nn.initializers.zeros
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def dense_kernel(self, kernel, in_channels: int, table: np.ndarray):
        """Scatter the ``(*k, n_connections)`` kernel into a dense ``(*k, C_in, C_out)`` one (zeros elsewhere)."""
        rows, cols = np.nonzero(table)
        dense = jnp.zeros((*kernel.shape[:-1], in_channels, table.shape[1]), kernel.dtype)
        return dense.at[..., rows, cols].set(kernel)

    @nn.compact
    @names_the_layer
    def __call__(self, x):
        c_in = x.shape[-1]
        table = validate_table(self.table, c_in, self.features)
        window = kernel_window(self.kernel_size, x.ndim - 2)
        n_conn = int(table.sum())
        kernel = self.param("kernel", self.kernel_init, (*window, n_conn), self.param_dtype)
        bias = self.param("bias", self.bias_init, (table.shape[1],), self.param_dtype) if self.use_bias else None
        dtype = self.dtype or x.dtype
        return ops.conv(
            x.astype(dtype),
            self.dense_kernel(kernel, c_in, table).astype(dtype),
            None if bias is None else bias.astype(dtype),
            stride=self.strides,
            padding=self.padding,
        )
