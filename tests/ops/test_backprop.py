"""Back-propagation through conv and pooling as the lectures state it (seeds 001, 002).

Seed 001 ("Обратная свертка"): the deltas of the input are the output deltas convolved, with the window
running past the edges (a FULL convolution), with the kernel rotated by 180 degrees.
Seed 002 writes O11 = F11 X11 + F12 X12 + F21 X21 + F22 X22, ... and differentiates by hand.
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnjax import ops
from tests.ops.oracle import examples


def rot180(kernel):
    """Rotate the spatial axes by 180 degrees and swap in/out channels: (*k, I, O) -> (*k, O, I)."""
    nd = kernel.ndim - 2
    return jnp.swapaxes(jnp.flip(kernel, axis=tuple(range(nd))), -1, -2)


def insert_zeros(g, stride, tail):
    """Seed 004's picture of a strided gradient: s - 1 zeros between elements, ``tail`` zeros at the end."""
    nd = g.ndim - 2
    out = g
    for axis in range(nd):
        a = axis + 1
        n = out.shape[a]
        shape = list(out.shape)
        shape[a] = (n - 1) * stride[axis] + 1 + tail[axis]
        idx = [slice(None)] * out.ndim
        idx[a] = slice(0, (n - 1) * stride[axis] + 1, stride[axis])
        out = jnp.zeros(shape, out.dtype).at[tuple(idx)].set(out)
    return out


def test_seed_002_hand_derivatives():
    """X 3x3, F 2x2: dL/dX_ij = sum over the outputs that touched X_ij, = FULL conv of dO with rot180(F)."""
    X = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    F = jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    dO = jnp.array([[1.0, -1.0], [2.0, 0.5]])
    _, vjp = jax.vjp(lambda x, f: ops.conv(x, f), X, F)
    dX, dF = vjp(dO.reshape(1, 2, 2, 1))
    f = np.asarray(F)[:, :, 0, 0]
    d = np.asarray(dO)
    # by hand, from O11..O22 of the slide
    by_hand = np.array(
        [
            [f[0, 0] * d[0, 0], f[0, 1] * d[0, 0] + f[0, 0] * d[0, 1], f[0, 1] * d[0, 1]],
            [
                f[1, 0] * d[0, 0] + f[0, 0] * d[1, 0],
                f[1, 1] * d[0, 0] + f[1, 0] * d[0, 1] + f[0, 1] * d[1, 0] + f[0, 0] * d[1, 1],
                f[1, 1] * d[0, 1] + f[0, 1] * d[1, 1],
            ],
            [f[1, 0] * d[1, 0], f[1, 1] * d[1, 0] + f[1, 0] * d[1, 1], f[1, 1] * d[1, 1]],
        ]
    )
    np.testing.assert_allclose(np.asarray(dX)[0, :, :, 0], by_hand, rtol=1e-6)
    full = ops.conv(dO.reshape(1, 2, 2, 1), rot180(F), padding="FULL")
    np.testing.assert_allclose(np.asarray(dX), np.asarray(full), rtol=1e-6)
    # dL/dF_uv = sum_ij X_{i+u, j+v} dO_ij: the correlation of the input with the output gradient
    x = np.asarray(X)[0, :, :, 0]
    by_hand_f = np.array([[np.sum(x[u : u + 2, v : v + 2] * d) for v in range(2)] for u in range(2)])
    np.testing.assert_allclose(np.asarray(dF)[:, :, 0, 0], by_hand_f, rtol=1e-6)


@st.composite
def backprop_case(draw):
    nd = draw(st.integers(1, 2))
    window = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    spatial = tuple(d * (k - 1) + 1 + draw(st.integers(0, 5)) for k, d in zip(window, dilation))
    return dict(
        x_shape=(draw(st.integers(1, 2)), *spatial, draw(st.integers(1, 3))),
        window=window,
        c_out=draw(st.integers(1, 3)),
        stride=stride,
        dilation=dilation,
        seed=draw(st.integers(0, 2**16)),
    )


@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(backprop_case())
def test_input_gradient_is_full_conv_with_rotated_kernel(case):
    with jax.enable_x64(True):
        rng = np.random.default_rng(case["seed"])
        x = jnp.asarray(rng.normal(size=case["x_shape"]))
        f = jnp.asarray(rng.normal(size=(*case["window"], case["x_shape"][-1], case["c_out"])))
        s, d = case["stride"], case["dilation"]
        y = jax.eval_shape(lambda v: ops.conv(v, f, stride=s, dilation=d), x)
        g = jnp.asarray(rng.normal(size=y.shape))
        dx = jax.jit(lambda v, gg: jax.vjp(lambda u: ops.conv(u, f, stride=s, dilation=d), v)[1](gg)[0])(x, g)
        # cells of x past the last window get no gradient: pad the zero-inserted deltas at the end
        tail = [
            h - ((o - 1) * st_ + dd * (k - 1) + 1)
            for h, o, st_, dd, k in zip(case["x_shape"][1:-1], y.shape[1:-1], s, d, case["window"])
        ]
        g_up = insert_zeros(g, s, tail)
        want = jax.jit(lambda gg: ops.conv(gg, rot180(f), padding="FULL", dilation=d))(g_up)
        assert want.shape == dx.shape
        np.testing.assert_allclose(np.asarray(dx), np.asarray(want), rtol=1e-10, atol=1e-10)


@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(backprop_case())
def test_kernel_gradient_is_correlation_of_input_with_output_gradient(case):
    """dL/dF[u, m, k] = sum_{n, p} X[n, p S + u D, m] G[n, p, k]: conv of X (batch <-> channels) with G."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(case["seed"])
        x = jnp.asarray(rng.normal(size=case["x_shape"]))
        f = jnp.asarray(rng.normal(size=(*case["window"], case["x_shape"][-1], case["c_out"])))
        s, d = case["stride"], case["dilation"]
        y = jax.eval_shape(lambda k: ops.conv(x, k, stride=s, dilation=d), f)
        g = jnp.asarray(rng.normal(size=y.shape))
        df = jax.jit(lambda k, gg: jax.vjp(lambda u: ops.conv(x, u, stride=s, dilation=d), k)[1](gg)[0])(f, g)
        nd = x.ndim - 2
        xt = jnp.swapaxes(x, 0, -1)  # (M, *spatial, N): the input maps become the batch
        gt = jnp.moveaxis(g, 0, -2)  # (*out, N, K): the output gradient is the kernel
        corr = jax.jit(lambda a, b: ops.conv(a, b, stride=d, dilation=s))(xt, gt)  # (M, *>=window, K)
        corr = corr[(slice(None), *[slice(0, k) for k in case["window"]])]
        want = jnp.moveaxis(corr, 0, nd)  # (*window, M, K)
        np.testing.assert_allclose(np.asarray(df), np.asarray(want), rtol=1e-10, atol=1e-10)


def test_bias_gradient_is_the_sum_of_output_deltas():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 6, 6, 3)), jnp.float32)
    f = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)
    b = jnp.zeros(4)
    g = jnp.asarray(rng.normal(size=(2, 4, 4, 4)), jnp.float32)
    _, vjp = jax.vjp(lambda bb: ops.conv(x, f, bb), b)
    np.testing.assert_allclose(vjp(g)[0], g.sum(axis=(0, 1, 2)), rtol=1e-5)


@settings(max_examples=examples(10), deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 3), st.integers(2, 3))
def test_max_pool_gradient_only_at_the_argmax(seed, channels, window):
    rng = np.random.default_rng(seed)
    x = rng.permutation(2 * 6 * 6 * channels).reshape(2, 6, 6, channels).astype(np.float32)  # distinct values
    g = jax.grad(lambda v: jnp.sum(ops.max_pool(v, window) * 1.0))(jnp.asarray(x))
    g = np.asarray(g)
    mask = np.zeros_like(x)
    n_out = 6 // window
    for n in range(2):
        for c in range(channels):
            for i in range(n_out):
                for j in range(n_out):
                    block = x[n, i * window : (i + 1) * window, j * window : (j + 1) * window, c]
                    u, v = np.unravel_index(np.argmax(block), block.shape)
                    mask[n, i * window + u, j * window + v, c] = 1
    np.testing.assert_array_equal(g, mask)
    # with upstream deltas: each window's delta lands on its arg-max, everything else is zero
    up = rng.normal(size=(2, n_out, n_out, channels)).astype(np.float32)
    _, vjp = jax.vjp(lambda v: ops.max_pool(v, window), jnp.asarray(x))
    gx = np.asarray(vjp(jnp.asarray(up))[0])
    assert np.count_nonzero(gx) == np.count_nonzero(up)
    np.testing.assert_array_equal(gx != 0, (mask != 0) & (gx != 0))
    np.testing.assert_allclose(np.sort(gx[mask == 1]), np.sort(up.ravel()), rtol=1e-6)


def test_avg_pool_gradient_is_uniform():
    x = jnp.ones((1, 4, 4, 1))
    g = jax.grad(lambda v: jnp.sum(ops.avg_pool(v, 2)))(x)
    np.testing.assert_allclose(g, 0.25 * np.ones((1, 4, 4, 1)))
