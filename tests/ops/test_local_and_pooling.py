"""locally_connected (NumPy loops, shared kernel == conv) and pooling (PyTorch oracle)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from cnnjax import ops
from cnnjax.ops import arithmetic
from tests.ops.oracle import examples, from_torch_x, numpy_locally_connected, to_torch_x, torch_pool

FAST = settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def local_case(draw):
    nd = draw(st.integers(1, 2))
    window = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    padding = draw(st.sampled_from(["VALID", "SAME", 1, "pairs"]))
    if padding == "pairs":
        padding = [(draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nd)]
    pads = ops.normalize_padding(padding, window, dilation)
    spatial = tuple(
        max(1, d * (k - 1) + 1 - lo - hi) + draw(st.integers(0, 4)) for k, d, (lo, hi) in zip(window, dilation, pads)
    )
    out = tuple(
        arithmetic.output_size(h, k, s, p, d) for h, k, s, p, d in zip(spatial, window, stride, pads, dilation)
    )
    return dict(
        x_shape=(draw(st.integers(1, 2)), *spatial, draw(st.integers(1, 3))),
        window=window, stride=stride, dilation=dilation, padding=padding, pads=pads, out=out,
        c_out=draw(st.integers(1, 3)), seed=draw(st.integers(0, 2**16)),
    )


def _local_arrays(case, dtype):
    rng = np.random.default_rng(case["seed"])
    x = rng.uniform(-1, 1, case["x_shape"]).astype(dtype)
    k = rng.uniform(-1, 1, (*case["out"], *case["window"], case["x_shape"][-1], case["c_out"])).astype(dtype)
    b = rng.uniform(-1, 1, (*case["out"], case["c_out"])).astype(dtype)
    return x, k, b


def _local(x, k, b, case):
    """One jitted call (one compilation) instead of eager op-by-op dispatch: keeps the test fast."""
    kw = dict(kernel_size=case["window"], stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    return jax.jit(lambda x, k, b: ops.locally_connected(x, k, b, **kw))(x, k, b)


@FAST
@given(local_case())
def test_locally_connected_matches_numpy_loops(case):
    x, k, b = _local_arrays(case, np.float32)
    want = numpy_locally_connected(x, k, b, stride=case["stride"], pads=case["pads"], dilation=case["dilation"])
    np.testing.assert_allclose(np.asarray(_local(x, k, b, case)), want, rtol=1e-5, atol=1e-5)
    with jax.enable_x64(True):
        x, k, b = _local_arrays(case, np.float64)
        got = _local(x, k, b, case)
        assert got.dtype == np.float64
        want = numpy_locally_connected(x, k, b, stride=case["stride"], pads=case["pads"], dilation=case["dilation"])
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-10)


@FAST
@given(local_case())
def test_locally_connected_with_a_shared_kernel_is_conv(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.uniform(-1, 1, case["x_shape"]).astype(np.float32)
    shared = rng.uniform(-1, 1, (*case["window"], case["x_shape"][-1], case["c_out"])).astype(np.float32)
    bias = rng.uniform(-1, 1, case["c_out"]).astype(np.float32)
    k = np.broadcast_to(shared, (*case["out"], *shared.shape))
    b = np.broadcast_to(bias, (*case["out"], case["c_out"]))
    want = jax.jit(lambda x: ops.conv(x, shared, bias, stride=case["stride"], padding=case["padding"],
                                      dilation=case["dilation"]))(x)
    np.testing.assert_allclose(np.asarray(_local(x, k, b, case)), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_locally_connected_weights_differ_per_position():
    """Seed 004: k-local layer, 1-D, one map: output m uses its own k weights; (k + 1) m parameters."""
    x = jnp.arange(1.0, 7.0).reshape(1, 6, 1)  # n = 6
    k, m = 3, 4
    w = jnp.arange(1.0, m * k + 1).reshape(m, k, 1, 1)
    b = jnp.arange(m, dtype=jnp.float32).reshape(m, 1) * 100
    y = np.asarray(ops.locally_connected(x, w, b, kernel_size=k))[0, :, 0]
    want = [float(np.dot(np.arange(1, 7)[i : i + k], np.asarray(w)[i, :, 0, 0]) + 100 * i) for i in range(m)]
    np.testing.assert_allclose(y, want)
    assert w.size + b.size == arithmetic.k_local_params(k, m) == (k + 1) * m


def test_extract_patches_layout():
    x = jnp.arange(5.0).reshape(1, 5, 1)
    p = ops.extract_patches(x, 3, stride=2)
    np.testing.assert_array_equal(np.asarray(p)[0, :, :, 0], [[0, 1, 2], [2, 3, 4]])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kernel_size=2), "window"),
        (dict(kernel_size=3, stride=2), "output size"),
        (dict(kernel_size=3, padding="SAME"), "output size"),
        (dict(kernel_size=3, padding=-1), "negative"),
        (dict(kernel_size=3, stride=0), "stride"),
    ],
)
def test_locally_connected_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ops.locally_connected(jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 3, 3, 2, 4)), **kwargs)


def test_locally_connected_shape_errors():
    with pytest.raises(ValueError, match="axes"):
        ops.locally_connected(jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 4)), kernel_size=3)
    with pytest.raises(ValueError, match="C_in=2"):
        ops.locally_connected(jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 3, 3, 1, 4)), kernel_size=3)
    with pytest.raises(ValueError, match="bias"):
        ops.locally_connected(jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 3, 3, 2, 4)), jnp.ones(4), kernel_size=3)
    with pytest.raises(ValueError, match="larger than the padded input"):
        ops.locally_connected(jnp.ones((1, 2, 2, 2)), jnp.ones((1, 1, 3, 3, 2, 4)), kernel_size=3)


# ------------------------------------------------------------------------------------------------ pooling


@st.composite
def pool_case(draw):
    nd = draw(st.integers(1, 3))
    window = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    padding = tuple(draw(st.integers(0, k // 2)) for k in window)  # torch: padding <= kernel / 2
    # torch's avg_pool3d wants the unpadded input at least as large as the window
    spatial = tuple(k + draw(st.integers(0, 4 if nd < 3 else 2)) for k in window)
    return dict(x_shape=(draw(st.integers(1, 2)), *spatial, draw(st.integers(1, 3))), window=window,
                stride=stride, padding=padding, seed=draw(st.integers(0, 2**16)))


@settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool_case(), st.sampled_from(["max", "avg", "avg_exclude"]))
def test_pooling_matches_torch(case, kind):
    rng = np.random.default_rng(case["seed"])
    x = rng.normal(size=case["x_shape"]).astype(np.float32)
    args = (case["window"], case["stride"], case["padding"])
    if kind == "max":
        got = ops.max_pool(x, *args)
        want = torch_pool("max", x, *args)
    else:
        include = kind == "avg"
        got = ops.avg_pool(x, *args, count_include_pad=include)
        want = torch_pool("avg", x, *args, count_include_pad=include)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "shape, window, stride, padding",
    [
        ((2, 8, 8, 3), (2, 2), (2, 2), (0, 0)),  # windows tile the input: the strided-slice path
        ((2, 9, 7, 3), (2, 3), (2, 3), (0, 0)),  # tiles after dropping the last row (VALID)
        ((2, 9, 2), (3,), (3,), (0,)),  # 1-D
        ((1, 4, 6, 4, 2), (2, 2, 2), (2, 2, 2), (0, 0, 0)),  # 3-D
        ((1, 24, 12, 2), (12, 12), (12, 12), (0, 0)),  # 144 cells: the winner index does not fit int8
        ((2, 7, 7, 3), (3, 3), (2, 2), (1, 1)),  # overlapping windows: reduce_window
    ],
)
def test_max_pool_gradient_goes_to_the_first_argmax_like_torch(shape, window, stride, padding):
    """Inputs drawn from {0, 1, 2} tie often: the gradient must pick the same cell as PyTorch's."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=shape).astype(np.float64)
    dy_shape = torch_pool("max", x, window, stride, padding).shape
    dy = rng.normal(size=dy_shape)
    with jax.enable_x64(True):
        got = jax.jit(jax.grad(lambda v: jnp.sum(ops.max_pool(v, window, stride, padding) * dy)))(x)
        assert got.dtype == np.float64
    xt = to_torch_x(x).requires_grad_(True)
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(window)]
    (fn(xt, window, stride, padding) * to_torch_x(dy)).sum().backward()
    np.testing.assert_array_equal(np.asarray(got), from_torch_x(xt.grad))


def test_max_pool_gradient_goes_to_a_nan_like_torch():
    """A window with a NaN (max propagates it) sends its gradient to the NaN, as PyTorch does. (With several
    NaNs in one window cnnjax picks the first, PyTorch's CPU and CUDA kernels the last.)"""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 3, size=(2, 6, 6, 3)).astype(np.float32)
    cells = rng.integers(0, 2, size=(2, 3, 3, 3, 2))  # one NaN per window, at a random cell, in half the windows
    n, i, j, c = np.nonzero(rng.random((2, 3, 3, 3)) < 0.5)
    x[n, 2 * i + cells[n, i, j, c, 0], 2 * j + cells[n, i, j, c, 1], c] = np.nan
    dy = rng.normal(size=(2, 3, 3, 3)).astype(np.float32)
    got = jax.grad(lambda v: jnp.sum(ops.max_pool(v, 2) * dy))(jnp.asarray(x))
    xt = to_torch_x(x).requires_grad_(True)
    (F.max_pool2d(xt, 2) * to_torch_x(dy)).sum().backward()
    np.testing.assert_array_equal(np.asarray(got), from_torch_x(xt.grad))


@pytest.mark.parametrize("stride", [2, 1])  # the tiled fast path / reduce_window
def test_max_pool_forward_and_reverse_mode_equal_torchs_jacobian(stride):
    """jacfwd and jacrev of max_pool both equal PyTorch's Jacobian (an independent oracle; with ties: the
    first maximum of each window gets the gradient)."""
    x = np.random.default_rng(1).integers(0, 3, size=(1, 4, 4, 2)).astype(np.float32)
    fn = lambda v: ops.max_pool(v, 2, stride)  # noqa: E731
    want = torch.autograd.functional.jacobian(lambda t: F.max_pool2d(t, 2, stride), to_torch_x(x)).numpy()
    want = want.transpose(0, 2, 3, 1, 4, 6, 7, 5)  # (n, c, h, w) x (N, C, H, W) -> channels-last both
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.jacfwd(fn))(x)), want)
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.jacrev(fn))(x)), want)


def test_max_pool_propagates_nan_and_drops_the_gradient_of_cut_off_cells():
    x = jnp.arange(25.0).reshape(1, 5, 5, 1).at[0, 0, 1, 0].set(jnp.nan)
    y = ops.max_pool(x, 2)
    assert y.shape == (1, 2, 2, 1) and bool(jnp.isnan(y[0, 0, 0, 0])) and float(y[0, 1, 1, 0]) == 18.0
    g = jax.grad(lambda v: jnp.sum(ops.max_pool(v, 2)))(jnp.arange(25.0).reshape(1, 5, 5, 1))
    assert float(g[0, 4].sum() + g[0, :, 4].sum()) == 0.0 and float(g.sum()) == 4.0


def test_pooling_float64():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 6, 3))
    with jax.enable_x64(True):
        for kind in ("max", "avg"):
            fn = ops.max_pool if kind == "max" else ops.avg_pool
            got = fn(x, (3, 2), (2, 2), (1, 1))
            assert got.dtype == np.float64
            np.testing.assert_allclose(np.asarray(got), torch_pool(kind, x, (3, 2), (2, 2), (1, 1)), rtol=1e-12,
                                       atol=1e-12)


def test_pooling_by_hand():
    x = jnp.array([[1.0, 2.0, 5.0, 0.0], [3.0, 4.0, 1.0, 1.0], [0.0, 0.0, 7.0, 8.0], [1.0, 2.0, 9.0, 6.0]])
    x = x.reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(np.asarray(ops.max_pool(x, 2))[0, :, :, 0], [[4, 5], [2, 9]])
    np.testing.assert_array_equal(np.asarray(ops.sum_pool(x, 2))[0, :, :, 0], [[10, 7], [3, 30]])
    np.testing.assert_array_equal(np.asarray(ops.avg_pool(x, 2))[0, :, :, 0], [[2.5, 1.75], [0.75, 7.5]])
    # stride defaults to the window; an explicit stride 1 overlaps the windows
    assert ops.max_pool(x, 2, stride=1).shape == (1, 3, 3, 1)
    # SAME keeps ceil(H / S); padded cells never win a max
    neg = -jnp.ones((1, 3, 3, 1))
    np.testing.assert_array_equal(np.asarray(ops.max_pool(neg, 2, padding="SAME")), -np.ones((1, 2, 2, 1)))
    # count_include_pad: zeros count (PyTorch default) or not (Keras 'same')
    ones = jnp.ones((1, 3, 3, 1))
    np.testing.assert_allclose(np.asarray(ops.avg_pool(ones, 2, padding="SAME", count_include_pad=False)), 1.0)
    np.testing.assert_allclose(
        np.asarray(ops.avg_pool(ones, 2, padding="SAME"))[0, :, :, 0], [[1.0, 0.5], [0.5, 0.25]]
    )
    np.testing.assert_allclose(np.asarray(ops.global_avg_pool(x)), [[np.mean(np.asarray(x))]])
    np.testing.assert_allclose(np.asarray(ops.global_max_pool(x)), [[9.0]])
    assert ops.global_avg_pool(x, keepdims=True).shape == (1, 1, 1, 1)


def test_pooling_integer_input():
    x = jnp.arange(16, dtype=jnp.uint8).reshape(1, 4, 4, 1)
    assert ops.max_pool(x, 2).dtype == jnp.uint8
    assert ops.avg_pool(x, 2).dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(ops.max_pool(x, 2, padding="SAME"))[0, :, :, 0], [[5, 7], [13, 15]])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(window=0), "window"),
        (dict(window=2, stride=0), "stride"),
        (dict(window=5), "larger than the padded input"),
        (dict(window=2, padding=2), "smaller than the window"),
        (dict(window=2, padding=-1), "negative"),
        (dict(window=2, padding="HALF"), "unknown"),
        (dict(window=(2, 2, 2)), "window"),
    ],
)
def test_pooling_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ops.max_pool(jnp.ones((1, 4, 4, 1)), **kwargs)


def test_global_pool_error():
    with pytest.raises(ValueError, match="spatial"):
        ops.global_avg_pool(jnp.ones((2, 3)))


@pytest.mark.parametrize("pool", ["max_pool", "sum_pool", "avg_pool"])
@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_pooling_is_differentiable_under_jit(pool, padding):
    """reduce_window with an array init value has no VJP under jit; the ops must pass a scalar."""
    fn = getattr(ops, pool)
    x = jnp.arange(36.0).reshape(1, 6, 6, 1)
    g = jax.jit(jax.grad(lambda v: jnp.sum(fn(v, 3, 2, padding))))(x)
    assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g)))
