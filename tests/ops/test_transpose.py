"""conv_transpose: PyTorch ConvTranspose oracle, the adjoint identity, and the seed-004 zero-insertion picture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnjax import ops
from cnnjax.ops import arithmetic
from tests.ops.oracle import examples, jit_call, torch_conv_transpose


def SETTINGS(n):
    return settings(max_examples=examples(n), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def transpose_case(draw):
    nd = draw(st.integers(1, 3))
    small = nd == 3
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c_in = groups * draw(st.integers(1, 2 if small else 3))
    c_out = groups * draw(st.integers(1, 2 if small else 3))
    window = tuple(draw(st.integers(1, 3 if small else 4)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2 if small else 3)) for _ in range(nd))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    spatial = tuple(draw(st.integers(1, 3 if small else 5)) for _ in range(nd))
    # torch needs a positive output: (H - 1) S - 2P + D (K - 1) + op + 1 >= 1
    padding = []
    for h, k, s, d, op in zip(spatial, window, stride, dilation, output_padding):
        top = ((h - 1) * s + d * (k - 1) + op) // 2
        padding.append(draw(st.integers(0, min(top, 3))))
    return dict(
        x_shape=(draw(st.integers(1, 2)), *spatial, c_in),
        k_shape=(*window, c_out // groups, c_in),
        stride=stride,
        dilation=dilation,
        padding=tuple(padding),
        output_padding=output_padding,
        groups=groups,
        use_bias=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


def _arrays(case, dtype):
    rng = np.random.default_rng(case["seed"])
    x = rng.uniform(-1, 1, case["x_shape"]).astype(dtype)
    k = rng.uniform(-1, 1, case["k_shape"]).astype(dtype)
    c_out = case["k_shape"][-2] * case["groups"]
    b = rng.uniform(-1, 1, c_out).astype(dtype) if case["use_bias"] else None
    return x, k, b


def _kw(case):
    return {key: case[key] for key in ("stride", "padding", "output_padding", "dilation", "groups")}


def _check(case, dtype, tol):
    x, k, b = _arrays(case, dtype)
    got = jit_call(ops.conv_transpose, x, k, b, **_kw(case))
    want = torch_conv_transpose(x, k, b, **_kw(case))
    assert got.shape == want.shape
    assert got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got), want, rtol=tol, atol=tol)
    for axis, h in enumerate(case["x_shape"][1:-1]):
        assert got.shape[1 + axis] == arithmetic.conv_transpose_output_size(
            h,
            case["k_shape"][axis],
            case["stride"][axis],
            case["padding"][axis],
            case["output_padding"][axis],
            case["dilation"][axis],
        )


@SETTINGS(20)
@given(transpose_case())
def test_conv_transpose_matches_torch_float32(case):
    _check(case, np.float32, 1e-5)


@SETTINGS(12)
@given(transpose_case())
def test_conv_transpose_matches_torch_float64(case):
    with jax.enable_x64(True):
        _check(case, np.float64, 1e-10)


@SETTINGS(12)
@given(transpose_case())
def test_adjoint_identity(case):
    """<conv(y, F), x> == <y, conv_transpose(x, F)> for every y of the transposed output's shape.

    When ``output_padding >= stride`` (allowed when ``dilation > stride``) conv(y) has extra trailing cells
    that no input cell of conv_transpose reaches; the identity holds for conv(y) cropped to x's size.
    """
    with jax.enable_x64(True):
        x, k, _ = _arrays(case, np.float64)
        kw = _kw(case)
        t = jit_call(ops.conv_transpose, x, k, **kw)
        y = np.random.default_rng(case["seed"] + 1).uniform(-1, 1, t.shape)
        crop = tuple(slice(0, h) for h in x.shape)

        def forward(v):
            pads = [(p, p) for p in kw["padding"]]
            out = ops.conv(v, k, stride=kw["stride"], padding=pads, dilation=kw["dilation"], groups=kw["groups"])
            return out[crop]

        cy = jax.jit(forward)(y)
        assert cy.shape == x.shape
        if all(op < s for op, s in zip(kw["output_padding"], kw["stride"])):
            full = jax.eval_shape(lambda v: ops.conv(v, k, stride=kw["stride"], padding=[(p, p) for p in kw["padding"]],
                                                     dilation=kw["dilation"], groups=kw["groups"]), y)
            assert full.shape == x.shape
        lhs = float(jnp.vdot(cy, x))
        rhs = float(jnp.vdot(y, t))
        assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))
        # and it is exactly the vector-Jacobian product of conv with respect to its input
        vjp_x = jax.jit(lambda yy, xx: jax.vjp(forward, yy)[1](xx)[0])(jnp.asarray(y), jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(vjp_x), np.asarray(t), rtol=1e-10, atol=1e-10)


def test_stride_inserts_zeros_between_input_elements():
    """Seed 004: stride s inserts s - 1 zeros between input elements, then a (full) convolution runs."""
    x = np.array([1.0, 2.0, 3.0], np.float32).reshape(1, 3, 1)
    k = np.array([1.0, 10.0, 100.0], np.float32).reshape(3, 1, 1)
    y = np.asarray(ops.conv_transpose(x, k, stride=2))[0, :, 0]
    dilated = np.array([1, 0, 2, 0, 3], np.float32)
    want = np.convolve(dilated, [1.0, 10.0, 100.0])  # true convolution = correlation with the flipped kernel
    np.testing.assert_allclose(y, want)
    assert y.shape == (7,)
    # each input element scatters a weighted copy of the kernel
    np.testing.assert_allclose(y, [1, 10, 102, 20, 203, 30, 300])


def test_output_padding_selects_the_size():
    x = jnp.ones((1, 4, 4, 2))
    k = jnp.ones((3, 3, 5, 2))
    assert ops.conv_transpose(x, k, stride=2, padding=1).shape == (1, 7, 7, 5)
    assert ops.conv_transpose(x, k, stride=2, padding=1, output_padding=1).shape == (1, 8, 8, 5)
    assert ops.conv_transpose(x, k, stride=2, padding=1, output_padding=(0, 1)).shape == (1, 7, 8, 5)


def test_padding_larger_than_the_kernel_crops():
    """padding > D (K - 1) makes the inner convolution's padding negative; torch allows it, so do we."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 5, 2)).astype(np.float32)
    k = rng.normal(size=(2, 3, 2)).astype(np.float32)
    kw = dict(stride=3, padding=3, output_padding=0, dilation=1, groups=1)
    np.testing.assert_allclose(ops.conv_transpose(x, k, **kw), torch_conv_transpose(x, k, **kw), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(output_padding=2, stride=2), "output_padding"),
        (dict(padding=-1), "padding"),
        (dict(padding="SAME"), "padding"),
        (dict(stride=0), "stride"),
        (dict(dilation=(1, 0)), "dilation"),
        (dict(groups=3), "groups=3 must divide in_channels=4"),
        (dict(padding=9), "too large"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ops.conv_transpose(jnp.ones((1, 3, 3, 4)), jnp.ones((3, 3, 2, 4)), **kwargs)


def test_kernel_channel_mismatch():
    with pytest.raises(ValueError, match="C_in=4"):
        ops.conv_transpose(jnp.ones((1, 3, 3, 4)), jnp.ones((3, 3, 2, 3)))
    with pytest.raises(ValueError, match="rank"):
        ops.conv_transpose(jnp.ones((1, 3, 4)), jnp.ones((3, 3, 2, 4)))
