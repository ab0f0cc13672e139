"""conv, depthwise_conv, separable_conv against PyTorch (F.pad + F.conv1d/2d/3d) and NumPy loops."""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnjax import ops
from cnnjax.ops.fast.banded import FEW_INPUT_CHANNELS
from tests.ops.oracle import (
    _CONV,
    examples,
    from_torch_x,
    jit_call,
    numpy_conv_loops,
    to_torch_kernel,
    to_torch_x,
    torch_conv,
    torch_pad,
)


def SETTINGS(n):
    return settings(max_examples=examples(n), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def conv_case(draw, pad_modes=("constant", "edge", "reflect", "wrap"), max_nd=3):
    nd = draw(st.integers(1, max_nd))
    small = nd == 3
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c_in = groups * draw(st.integers(1, 2 if small else 3))
    c_out = groups * draw(st.integers(1, 2 if small else 3))
    window = tuple(draw(st.integers(1, 3 if small else 4)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2 if small else 3)) for _ in range(nd))
    pad_mode = draw(st.sampled_from(pad_modes))
    padding_kind = draw(st.sampled_from(["VALID", "SAME", "FULL", "int", "pairs"]))
    if padding_kind == "int":
        padding = draw(st.integers(0, 2))
        pads = [(padding, padding)] * nd
    elif padding_kind == "pairs":
        pads = [(draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(nd)]
        padding = pads
    else:
        padding = padding_kind
        eff = [d * (k - 1) for k, d in zip(window, dilation)]
        pads = {
            "VALID": [(0, 0)] * nd,
            "SAME": [(e // 2, e - e // 2) for e in eff],
            "FULL": [(e, e) for e in eff],
        }[padding_kind]
    spatial = []
    for k, d, (lo, hi) in zip(window, dilation, pads):
        need = max(1, d * (k - 1) + 1 - lo - hi, max(lo, hi) + 1 if pad_mode != "constant" else 1)
        spatial.append(need + draw(st.integers(0, 2 if small else 5)))
    batch = draw(st.integers(1, 2))
    use_bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return dict(
        x_shape=(batch, *spatial, c_in),
        k_shape=(*window, c_in // groups, c_out),
        stride=stride,
        dilation=dilation,
        padding=padding,
        pads=pads,
        groups=groups,
        pad_mode=pad_mode,
        use_bias=use_bias,
        seed=seed,
    )


def _arrays(case, dtype):
    rng = np.random.default_rng(case["seed"])
    x = rng.uniform(-1, 1, case["x_shape"]).astype(dtype)
    k = rng.uniform(-1, 1, case["k_shape"]).astype(dtype)
    b = rng.uniform(-1, 1, case["k_shape"][-1]).astype(dtype) if case["use_bias"] else None
    return x, k, b


def _check_conv(case, dtype, tol):
    x, k, b = _arrays(case, dtype)
    got = jit_call(
        ops.conv,
        x,
        k,
        b,
        stride=case["stride"],
        padding=case["padding"],
        dilation=case["dilation"],
        groups=case["groups"],
        pad_mode=case["pad_mode"],
    )
    assert got.dtype == dtype
    if len(case["stride"]) == 3:
        # PyTorch 2.13's CPU conv3d returns wrong, run-to-run different values for some strided cases
        # (see test_conv3d_strided_regression), so 3-D cases use the NumPy loops as the oracle.
        xp = np.pad(np.asarray(x), [(0, 0), *case["pads"], (0, 0)], mode=case["pad_mode"])
        want = numpy_conv_loops(xp, k, b, stride=case["stride"], pads=[(0, 0)] * 3, dilation=case["dilation"],
                                groups=case["groups"])
    else:
        want = torch_conv(
            x,
            k,
            b,
            stride=case["stride"],
            pads=case["pads"],
            dilation=case["dilation"],
            groups=case["groups"],
            pad_mode=case["pad_mode"],
        )
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, rtol=tol, atol=tol)


@SETTINGS(20)
@given(conv_case())
def test_conv_matches_torch_float32(case):
    _check_conv(case, np.float32, 1e-5)


@SETTINGS(15)
@given(conv_case())
def test_conv_matches_torch_float64(case):
    with jax.enable_x64(True):
        _check_conv(case, np.float64, 1e-10)


@pytest.mark.parametrize(
    "x_shape, k_shape, kwargs, few_channel_path",
    [
        ((2, 28, 28, 1), (5, 5, 1, 6), dict(padding=2), True),  # LeNet-5 conv1: the banded GEMM
        ((2, 13, 12, 1), (3, 4, 1, 3), dict(dilation=(2, 1), padding=(1, 2)), True),  # last band padded
        ((2, 11, 1), (3, 1, 2), dict(dilation=3, padding=1), True),  # 1-D, one channel
        ((1, 6, 7, 9, 1), (2, 3, 3, 1, 4), dict(padding=1, dilation=(1, 1, 2)), True),  # 3-D, one channel
        ((3, 14, 14, 6), (5, 5, 6, 16), {}, True),  # LeNet-5 conv2: dX as a banded GEMM + scatter-add
        ((2, 9, 9, 3), (3, 3, 3, 4), dict(dilation=2, padding=(1, 2)), True),
        ((2, 7, 6, 2), (3, 3, 2, 3), dict(padding=1, pad_mode="reflect"), True),
        ((2, 17, 2), (3, 2, 4), dict(padding=2), True),  # 1-D
        ((1, 5, 6, 4, 3), (2, 3, 2, 3, 2), dict(padding=1), True),  # 3-D
        ((2, 9, 9, 3), (3, 3, 3, 4), dict(stride=2, padding=1), False),  # strided: XLA's gradient
        ((2, 8, 8, 8), (3, 3, 8, 4), dict(padding=1), False),  # 8 input channels: XLA's gradient
        ((2, 8, 8, 4), (3, 3, 2, 6), dict(groups=2, padding=1), False),
        # one output pixel along an axis of a padded conv: XLA:CPU aborted compiling these gradients (ops.pad_first)
        ((2, 1, 6, 6), (2, 2, 6, 9), dict(stride=(1, 2), padding=((0, 1), (1, 1))), False),
        ((1, 4, 6, 1), (2, 4, 1, 4), dict(stride=(2, 1), dilation=(1, 2), padding=((1, 1), (0, 1))), False),
    ],
)
def test_conv_gradients_match_torch_autograd(x_shape, k_shape, kwargs, few_channel_path):
    """dX, dF, db of ``sum(conv(x, F, b) * G)`` against torch.autograd, on both backward formulations."""
    rng = np.random.default_rng(0)
    x, k, b = rng.normal(size=x_shape), rng.normal(size=k_shape), rng.normal(size=k_shape[-1])
    nd = len(x_shape) - 2
    stride, dilation = kwargs.get("stride", 1), kwargs.get("dilation", 1)
    padding, groups, pad_mode = kwargs.get("padding", 0), kwargs.get("groups", 1), kwargs.get("pad_mode", "constant")
    assert few_channel_path == (groups == 1 and stride == 1 and x_shape[-1] < FEW_INPUT_CHANNELS)
    with jax.enable_x64(True):
        y = ops.conv(x, k, b, **kwargs)
        g = rng.normal(size=y.shape)
        got = jax.jit(jax.grad(lambda *a: jnp.sum(ops.conv(*a, **kwargs) * g), argnums=(0, 1, 2)))(x, k, b)
    per_axis = padding if isinstance(padding, tuple) else (padding,) * nd  # an int or a (lo, hi) pair per axis
    pads = [tuple(p) if isinstance(p, tuple) else (p, p) for p in per_axis]
    xt, kt, bt = to_torch_x(x).requires_grad_(), to_torch_kernel(k).requires_grad_(), torch.from_numpy(b)
    bt.requires_grad_()
    yt = _CONV[nd](torch_pad(xt, pads, pad_mode), kt, bt, stride=stride, dilation=dilation, groups=groups)
    (yt * to_torch_x(g)).sum().backward()
    np.testing.assert_allclose(np.asarray(got[0]), from_torch_x(xt.grad), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(got[1]), np.moveaxis(kt.grad.numpy(), (0, 1), (-1, -2)), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(np.asarray(got[2]), bt.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("reference", [True, False], ids=["reference", "dispatched"])
@pytest.mark.parametrize(
    "x_shape, k_shape, stride, padding",
    [
        # low padding past the kernel: XLA:CPU computed the input gradient from memory outside the input
        ((2, 1, 2, 1), (4, 1, 1, 16), (1, 1), ((4, 2), (0, 0))),  # the CI's case (openxla/xla#48713)
        ((2, 9, 8), (3, 8, 3), (1,), ((3, 1),)),  # 1-D, 8 -> 3 channels, low padding 3 > k - 1 = 2
        ((1, 6, 5, 4), (2, 3, 4, 5), (1, 1), ((2, 0), (3, 1))),  # past the kernel on both axes
        # an output no larger than the kernel: XLA:CPU aborted compiling the gradient
        ((2, 8, 4, 8), (2, 4, 8, 1), (2, 1), ((1, 1), (0, 1))),  # the CI's case: 2 output pixels, 4 taps
        ((2, 6, 4, 8), (5, 2, 8, 16), (1, 2), ((1, 0), (1, 1))),
        ((2, 4, 6, 8), (4, 2, 8, 1), (2, 2), ((2, 1), (1, 2))),
    ],
)
def test_conv_gradient_at_xla_cpu_defects_matches_torch(x_shape, k_shape, stride, padding, reference):
    """Padded convs whose XLA gradient meets an XLA:CPU defect (``ops.conv.pad_first`` pads their input first
    instead): the gradients in float32 against torch.autograd, on the reference formulation and on the
    dispatched one (a crash of the process fails the test too)."""
    rng = np.random.default_rng(0)
    x, k = rng.normal(size=x_shape).astype(np.float32), rng.normal(size=k_shape).astype(np.float32)
    conv = functools.partial(ops.conv, stride=stride, padding=padding)
    with ops.fast.reference_only() if reference else contextlib.nullcontext():
        g = rng.normal(size=jax.eval_shape(conv, x, k).shape).astype(np.float32)
        got = jax.jit(jax.grad(lambda a, b: jnp.sum(conv(a, b) * g), argnums=(0, 1)))(x, k)
    xt, kt = to_torch_x(x).requires_grad_(), to_torch_kernel(k).requires_grad_()
    yt = _CONV[len(x_shape) - 2](torch_pad(xt, padding, "constant"), kt, stride=stride)
    (yt * to_torch_x(g)).sum().backward()
    np.testing.assert_allclose(np.asarray(got[0]), from_torch_x(xt.grad), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(got[1]), np.moveaxis(kt.grad.numpy(), (0, 1), (-1, -2)), rtol=1e-4,
                               atol=1e-4)


def test_conv_gradient_path_choice():
    """Few input channels (per group), stride 1 and a small gather index: the banded-GEMM input gradient (its
    transpose is a scatter-add); otherwise XLA's own input-gradient convolution."""

    def uses_scatter(x_shape, k_shape, **kwargs):
        x, k = jnp.zeros(x_shape), jnp.zeros(k_shape)
        jaxpr = jax.make_jaxpr(jax.grad(lambda v: jnp.sum(ops.conv(v, k, **kwargs))))(x)
        return "scatter-add" in str(jaxpr)

    assert uses_scatter((2, 14, 14, 6), (5, 5, 6, 16))
    assert not uses_scatter((2, 14, 14, 8), (5, 5, 8, 16))
    assert not uses_scatter((2, 14, 14, 6), (5, 5, 6, 16), stride=2)
    assert uses_scatter((2, 14, 14, 6), (3, 3, 3, 16), groups=2)  # per group (ops.fast.grouped): 3 channels
    assert not uses_scatter((2, 14, 14, 16), (3, 3, 8, 16), groups=2)  # 8 channels per group
    assert not uses_scatter((64, 224, 224, 3), (3, 3, 3, 64), padding=1)  # index 64 x 224 x 56 bands x 3 x 6 > 2^22


@pytest.mark.parametrize("c_in", [1, 2])  # one input channel: the banded GEMM forward; two: XLA's conv forward
def test_conv_forward_and_reverse_mode_equal_torchs_jacobian(c_in):
    """The few-input-channel path defines a JVP: jacfwd and jacrev (its transpose) both equal PyTorch's
    Jacobian (an independent oracle, not the custom rule checked against itself)."""
    rng = np.random.default_rng(1)
    x, k = rng.normal(size=(1, 5, 5, c_in)), rng.normal(size=(3, 3, c_in, 2))
    want_x, want_k = torch.autograd.functional.jacobian(
        lambda xt, kt: F.conv2d(xt, kt, padding=1), (to_torch_x(x), to_torch_kernel(k)))
    want_x = want_x.numpy().transpose(0, 2, 3, 1, 4, 6, 7, 5)  # NCHW x NCHW -> NHWC x NHWC
    want_k = want_k.numpy().transpose(0, 2, 3, 1, 6, 7, 5, 4)  # NCHW x OIHW -> NHWC x HWIO
    with jax.enable_x64(True):
        for jac in (jax.jacfwd, jax.jacrev):
            got = jax.jit(jac(lambda *a: ops.conv(*a, padding=1), argnums=(0, 1)))(x, k)
            np.testing.assert_allclose(np.asarray(got[0]), want_x, rtol=1e-10, atol=1e-10, err_msg=jac.__name__)
            np.testing.assert_allclose(np.asarray(got[1]), want_k, rtol=1e-10, atol=1e-10, err_msg=jac.__name__)


@settings(max_examples=examples(10), deadline=None)
@given(conv_case(pad_modes=("constant",), max_nd=2))
def test_conv_matches_numpy_loops(case):
    """A second, torch-free oracle: the lecture formula as loops (float64)."""
    x, k, b = _arrays(case, np.float64)
    with jax.enable_x64(True):
        got = jit_call(
            ops.conv, x, k, b, stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
            groups=case["groups"],
        )
    want = numpy_conv_loops(x, k, b, stride=case["stride"], pads=case["pads"], dilation=case["dilation"],
                            groups=case["groups"])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap"])
def test_pad_modes_match_torch_f_pad(mode):
    from tests.ops.oracle import from_torch_x, to_torch_x, torch_pad

    x = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3)
    pads = [(2, 1), (3, 0)]
    got = ops.pad(x, pads, mode=mode)
    want = from_torch_x(torch_pad(to_torch_x(x), pads, mode))
    np.testing.assert_array_equal(np.asarray(got), want)


def test_pad_mode_semantics_by_hand():
    x = jnp.asarray([1.0, 2.0, 3.0]).reshape(1, 3, 1)
    row = lambda mode: np.asarray(ops.pad(x, [(2, 2)], mode=mode))[0, :, 0].tolist()  # noqa: E731
    assert row("constant") == [0, 0, 1, 2, 3, 0, 0]
    assert row("edge") == [1, 1, 1, 2, 3, 3, 3]  # nearest pixel
    assert row("reflect") == [3, 2, 1, 2, 3, 2, 1]  # mirror without repeating the edge
    assert row("wrap") == [2, 3, 1, 2, 3, 1, 2]  # circular


# ------------------------------------------------------------------------------ depthwise / separable


@st.composite
def depthwise_case(draw):
    nd = draw(st.integers(1, 2))
    c = draw(st.integers(1, 4))
    mult = draw(st.integers(1, 3))
    window = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = draw(st.integers(1, 2))
    dilation = draw(st.integers(1, 2))
    padding = draw(st.sampled_from(["VALID", "SAME", 1]))
    spatial = tuple(dilation * (k - 1) + 1 + draw(st.integers(0, 4)) for k in window)
    return dict(nd=nd, c=c, mult=mult, window=window, stride=stride, dilation=dilation, padding=padding,
                spatial=spatial, k_out=draw(st.integers(1, 4)), seed=draw(st.integers(0, 2**16)))


@SETTINGS(12)
@given(depthwise_case())
def test_depthwise_equals_per_channel_loop_and_torch(case):
    rng = np.random.default_rng(case["seed"])
    c, mult = case["c"], case["mult"]
    x = rng.uniform(-1, 1, (2, *case["spatial"], c)).astype(np.float32)
    k = rng.uniform(-1, 1, (*case["window"], c, mult)).astype(np.float32)
    b = rng.uniform(-1, 1, c * mult).astype(np.float32)
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    got = np.asarray(jit_call(ops.depthwise_conv, x, k, b, **kw))
    assert got.shape[-1] == c * mult
    # per-channel loop: channel m, multiplier j -> output channel m * mult + j, an ordinary 1-channel conv
    for m in range(c):
        for j in range(mult):
            single = jit_call(
                ops.conv, x[..., m : m + 1], k[..., m : m + 1, j : j + 1], b[m * mult + j : m * mult + j + 1], **kw
            )
            np.testing.assert_allclose(got[..., m * mult + j], np.asarray(single)[..., 0], rtol=1e-6, atol=1e-6)
    # torch: groups = channels, weight (C*mult, 1, *k)
    grouped = k.reshape(*case["window"], 1, c * mult)
    pads = ops.normalize_padding(case["padding"], case["window"], (case["dilation"],) * case["nd"])
    want = torch_conv(x, grouped, b, stride=case["stride"], pads=pads, dilation=case["dilation"], groups=c)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@SETTINGS(12)
@given(depthwise_case())
def test_separable_equals_depthwise_then_pointwise(case):
    rng = np.random.default_rng(case["seed"])
    c, mult, k_out = case["c"], case["mult"], case["k_out"]
    x = rng.uniform(-1, 1, (2, *case["spatial"], c)).astype(np.float32)
    dw = rng.uniform(-1, 1, (*case["window"], c, mult)).astype(np.float32)
    pw = rng.uniform(-1, 1, (c * mult, k_out)).astype(np.float32)
    b = rng.uniform(-1, 1, k_out).astype(np.float32)
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    got = jit_call(ops.separable_conv, x, dw, pw, b, **kw)
    z = jit_call(ops.depthwise_conv, x, dw, **kw)
    want = jit_call(ops.conv, z, pw.reshape((1,) * case["nd"] + pw.shape), b)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    # the 1x1-kernel spelling of the pointwise weights is accepted too
    got4 = jit_call(ops.separable_conv, x, dw, pw.reshape((1,) * case["nd"] + pw.shape), b, **kw)
    np.testing.assert_array_equal(np.asarray(got4), np.asarray(got))


def test_depthwise_is_grouped_conv_with_groups_equal_channels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 6, 6, 4)).astype(np.float32)
    k = rng.normal(size=(3, 3, 4, 1)).astype(np.float32)
    np.testing.assert_allclose(
        ops.depthwise_conv(x, k, padding="SAME"), ops.conv(x, k.reshape(3, 3, 1, 4), groups=4, padding="SAME"),
        rtol=1e-6,
    )


def test_conv3d_strided_regression():
    """A case hypothesis found where PyTorch 2.13 CPU conv3d is wrong; cnnjax equals the NumPy loops."""
    case = {"x_shape": (2, 1, 4, 4, 1), "k_shape": (1, 3, 3, 1, 1), "stride": (1, 1, 2), "dilation": (1, 1, 1),
            "padding": "VALID", "pads": [(0, 0), (0, 0), (0, 0)], "groups": 1, "pad_mode": "constant",
            "use_bias": False, "seed": 0}
    x, k, b = _arrays(case, np.float64)
    want = numpy_conv_loops(x, k, b, stride=(1, 1, 2), pads=case["pads"], dilation=(1, 1, 1))
    np.testing.assert_allclose(np.asarray(ops.conv(np.float32(x), np.float32(k), stride=(1, 1, 2))), want,
                               rtol=1e-5, atol=1e-5)
