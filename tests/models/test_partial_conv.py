"""Partially connected convolution (cnnjax.layers.partial): LeNet-5's Table I and seed 001's 7x9 table."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.layers.partial import LENET5_C3_TABLE, SEED001_TABLE, PartialConv, validate_table

KEY = jax.random.PRNGKey(0)


def random_variables(layer, x, seed=0):
    """Variables of the layer's shapes drawn by NumPy (the initialisers are not what these tests check)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), jax.eval_shape(layer.init, KEY, x))


def test_lenet5_table_is_table_one_of_the_paper():
    t = LENET5_C3_TABLE
    assert t.shape == (6, 16) and t.sum() == 60
    assert list(t.sum(axis=0)) == [3] * 6 + [4] * 9 + [6]
    # Row 0 of Table I (LeCun et al. 1998): X . . . X X X . . X X X X . X X
    assert "".join("X" if v else "." for v in t[0]) == "X...XXX..XXXX.XX"
    assert "".join("X" if v else "." for v in t[5]) == "...XXX..XXXX.XXX"
    for k in range(6):  # three contiguous maps (cyclically)
        assert set(np.flatnonzero(t[:, k])) == {k % 6, (k + 1) % 6, (k + 2) % 6}
    for k in range(6, 12):  # four contiguous
        assert set(np.flatnonzero(t[:, k])) == {(k - 6 + i) % 6 for i in range(4)}
    assert [set(np.flatnonzero(t[:, k])) for k in (12, 13, 14)] == [{0, 1, 3, 4}, {1, 2, 4, 5}, {0, 2, 3, 5}]


def numpy_partial_conv(x, kernel_dense, bias, table):
    n, h, w, c_in = x.shape
    kh, kw = kernel_dense.shape[:2]
    c_out = table.shape[1]
    y = np.zeros((n, h - kh + 1, w - kw + 1, c_out))
    for k in range(c_out):
        y[..., k] = bias[k]
        for m in range(c_in):
            if not table[m, k]:
                continue
            for i in range(h - kh + 1):
                for j in range(w - kw + 1):
                    y[:, i, j, k] += np.einsum("nab,ab->n", x[:, i : i + kh, j : j + kw, m], kernel_dense[:, :, m, k])
    return y


@pytest.mark.parametrize("table, kernel", [(LENET5_C3_TABLE, 5), (SEED001_TABLE, 3)])
def test_partial_conv_matches_numpy_loops_and_counts(table, kernel):
    c_in, c_out = table.shape
    layer = PartialConv(table, kernel_size=kernel)
    x = jax.random.normal(KEY, (2, 9, 8, c_in))
    variables = random_variables(layer, x)
    p = variables["params"]
    assert p["kernel"].shape == (kernel, kernel, int(table.sum()))
    n_params = p["kernel"].size + p["bias"].size
    assert n_params == int(table.sum()) * kernel * kernel + c_out
    dense = np.asarray(layer.dense_kernel(p["kernel"], c_in, np.asarray(table, bool)))
    assert np.all(dense[:, :, ~np.asarray(table, bool)] == 0)
    y = jax.jit(layer.apply)(variables, x)
    expected = numpy_partial_conv(np.asarray(x), dense, np.asarray(p["bias"]), np.asarray(table, bool))
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)


def test_seed001_table_counts():
    assert SEED001_TABLE.shape == (7, 9) and SEED001_TABLE.sum() == 29
    assert list(SEED001_TABLE[0].astype(int)) == [1, 0, 0, 0, 0, 1, 1, 1, 0]


def test_output_map_depends_only_on_its_connected_inputs():
    layer = PartialConv(LENET5_C3_TABLE, kernel_size=5)
    x = jax.random.normal(KEY, (1, 10, 10, 6))
    variables = random_variables(layer, x)
    maps = (0, 6, 12, 15)

    @jax.jit
    def input_gradients(x):
        return [jax.grad(lambda x: jnp.sum(layer.apply(variables, x)[..., k]))(x) for k in maps]

    # d(sum of output map k) / d(input map m) is nonzero exactly where the table connects m -> k.
    for k, g in zip(maps, input_gradients(x)):
        touched = np.abs(np.asarray(g)).sum(axis=(0, 1, 2)) > 0
        np.testing.assert_array_equal(touched, LENET5_C3_TABLE[:, k])


def test_bad_tables():
    with pytest.raises(ValueError, match="6 rows but the input has in_channels=4"):
        jax.eval_shape(PartialConv(LENET5_C3_TABLE).init, KEY, jnp.zeros((1, 9, 9, 4)))
    with pytest.raises(ValueError, match=r"columns \[1\] connect no input map"):
        validate_table([[1, 0], [1, 0]])
    with pytest.raises(ValueError, match="0/1"):
        validate_table([[2, 1]])
    with pytest.raises(ValueError, match="must be 2-D"):
        validate_table([1, 0, 1])
    with pytest.raises(ValueError, match="features=3"):
        jax.eval_shape(PartialConv(SEED001_TABLE, features=3).init, KEY, jnp.zeros((1, 9, 9, 7)))
