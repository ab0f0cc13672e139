"""conv_im2col must equal ops.conv (and PyTorch's conv2d) in values and gradients, and reject the same inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.im2col import conv_im2col, extract_conv_patches, im2col_is_faster
from cnnjax import ops


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _torch_conv2d(x, w, b, stride, pads, dilation, groups):
    """PyTorch oracle: NHWC / HWIO converted to NCHW / OIHW, explicit (lo, hi) zero padding."""
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    (top, bottom), (left, right) = pads
    xt = torch.nn.functional.pad(xt, (left, right, top, bottom))
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    y = torch.nn.functional.conv2d(xt, wt, torch.from_numpy(b), stride=stride, dilation=dilation, groups=groups)
    return y.numpy().transpose(0, 2, 3, 1)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 2),
    h=st.integers(5, 12),
    w=st.integers(5, 12),
    groups=st.sampled_from([1, 2, 3]),
    cpg=st.integers(1, 3),
    opg=st.integers(1, 3),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    pads=st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)), st.tuples(st.integers(0, 2), st.integers(0, 2))),
    seed=st.integers(0, 2**16),
)
def test_matches_conv_and_torch(n, h, w, groups, cpg, opg, kh, kw, stride, dilation, pads, seed):
    c_in, c_out = groups * cpg, groups * opg
    if h + sum(pads[0]) < dilation[0] * (kh - 1) + 1 or w + sum(pads[1]) < dilation[1] * (kw - 1) + 1:
        return
    x, k, b = _rand((n, h, w, c_in), seed), _rand((kh, kw, cpg, c_out), seed + 1), _rand((c_out,), seed + 2)
    kwargs = dict(stride=stride, padding=list(pads), dilation=dilation, groups=groups)
    got = np.asarray(jax.jit(lambda *a: conv_im2col(*a, **kwargs))(x, k, b))  # one compilation, not one per op
    want = np.asarray(jax.jit(lambda *a: ops.conv(*a, **kwargs))(x, k, b))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got, _torch_conv2d(x, k, b, stride, pads, dilation, groups), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding", ["VALID", "SAME", "FULL", 2])
def test_gradients_match_conv(padding):
    x, k, b = _rand((3, 9, 8, 4), 0), _rand((3, 3, 4, 5), 1), _rand((5,), 2)
    cot = _rand(np.shape(ops.conv(x, k, b, padding=padding, stride=(1, 2))), 3)

    def loss(fn):
        return lambda x, k, b: jnp.sum(fn(x, k, b, padding=padding, stride=(1, 2)) * cot)

    got = jax.jit(jax.grad(loss(conv_im2col), argnums=(0, 1, 2)))(x, k, b)
    want = jax.jit(jax.grad(loss(ops.conv), argnums=(0, 1, 2)))(x, k, b)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


def test_lenet_shapes_under_jit_and_uint8():
    """LeNet's two convs, uint8 input converted like ops.conv, inside jit."""
    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    k1 = _rand((5, 5, 1, 6), 1)
    got = jax.jit(lambda x, k: conv_im2col(x, k, padding="SAME"))(x, k1)
    want = ops.conv(x, k1, padding="SAME")
    assert got.dtype == jnp.float32 and got.shape == (4, 28, 28, 6)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-2)
    h = _rand((4, 14, 14, 6), 2)
    k2 = _rand((5, 5, 6, 16), 3)
    np.testing.assert_allclose(conv_im2col(h, k2), ops.conv(h, k2), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "x_shape,k_shape,kwargs",
    [((2, 17, 3), (4, 3, 5), dict(padding="SAME", stride=2)),
     ((1, 6, 7, 5, 2), (2, 3, 2, 2, 4), dict(padding=1, dilation=(1, 2, 1)))],
)
def test_1d_and_3d(x_shape, k_shape, kwargs):
    x, k = _rand(x_shape, 0), _rand(k_shape, 1)
    np.testing.assert_allclose(conv_im2col(x, k, **kwargs), ops.conv(x, k, **kwargs), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["edge", "reflect", "wrap"])
def test_pad_modes(mode):
    x, k = _rand((2, 7, 6, 3), 0), _rand((3, 3, 3, 2), 1)
    np.testing.assert_allclose(conv_im2col(x, k, padding="SAME", pad_mode=mode),
                               ops.conv(x, k, padding="SAME", pad_mode=mode), rtol=1e-4, atol=1e-4)


def test_patches_layout():
    """P[n, p, u, m] = X[n, p*S + u*D, m] with taps in row-major kernel order."""
    x = np.arange(2 * 6 * 7 * 3, dtype=np.float32).reshape(2, 6, 7, 3)
    p = np.asarray(extract_conv_patches(x, (2, 3), stride=(2, 1), dilation=(1, 2)))
    assert p.shape == (2, 3, 3, 6, 3)
    for i, j, u, v in [(0, 0, 0, 0), (1, 2, 1, 2), (2, 1, 0, 1)]:
        np.testing.assert_array_equal(p[1, i, j, u * 3 + v], x[1, 2 * i + u, j + 2 * v])


@pytest.mark.parametrize(
    "x_shape,k_shape,kwargs,match",
    [((2, 8, 8, 4), (3, 3, 4, 6), dict(groups=3), "groups=3 must divide in_channels=4"),
     ((2, 8, 8, 4), (3, 3, 2, 5), dict(groups=2), "groups=2 must divide out_channels=5"),
     ((2, 8, 8, 4), (3, 3, 4, 6), dict(stride=0), "stride=0"),
     ((2, 8, 8, 4), (3, 3, 4), {}, "rank"),
     ((2, 4, 4, 4), (5, 5, 4, 6), {}, "larger than the padded input"),
     ((2, 8, 8, 4), (3, 3, 4, 6), dict(bias=np.zeros(5, np.float32)), "bias.shape")],
)
def test_rejects_like_conv(x_shape, k_shape, kwargs, match):
    x, k = np.zeros(x_shape, np.float32), np.zeros(k_shape, np.float32)
    for fn in (conv_im2col, ops.conv):
        with pytest.raises(ValueError, match=match):
            fn(x, k, **kwargs)


def test_dispatch_heuristic():
    assert im2col_is_faster((128, 28, 28, 1), (5, 5, 1, 6))
    assert im2col_is_faster((128, 14, 14, 6), (5, 5, 6, 16))
    assert not im2col_is_faster((128, 14, 14, 6), (5, 5, 1, 6), groups=6)
