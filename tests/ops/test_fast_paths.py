"""Every fast path of :mod:`cnnjax.ops.fast` against the reference formulation of its op (``lax.conv_general_dilated``
/ ``lax.reduce_window``, selected with ``fast.reference_only()``): values, the gradient with respect to every
argument, NaN / Inf propagation, and jacfwd == jacrev; hypothesis draws shapes that reach the path (checked:
the traced program differs from the reference's)."""

import contextlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cnnjax import ops
from cnnjax.ops import fast
from cnnjax.ops.fast import banded, channels, depthwise, direct, grouped, strided
from tests.ops.oracle import examples


def SETTINGS(n):
    return settings(max_examples=examples(n), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _value_and_grads(fn, args, cotangent):
    """``fn(*args)`` and the vector-Jacobian product with ``cotangent`` for every argument, as one program."""
    y, vjp = jax.vjp(fn, *args)
    return y, vjp(cotangent)


def _run(fn, inputs, cotangent, reference: bool):
    """The program text of ``fn`` and, for each argument list in ``inputs``, its value and vector-Jacobian
    product with ``cotangent``: one jitted program, traced with the fast paths or (``reference``) without."""
    with fast.reference_only() if reference else contextlib.nullcontext():
        # fresh functions: jit's trace cache is keyed on the function, and tracing happens at the first call
        program = jax.jit(lambda a, c: _value_and_grads(lambda *x: fn(*x), a, c))
        jaxpr = str(jax.make_jaxpr(lambda *x: fn(*x))(*inputs[0]))
        return jaxpr, [program(a, cotangent) for a in inputs]


def _special_values(rng, a, fraction=0.1):
    """``a`` with about ``fraction`` of its entries replaced by NaN, +Inf or -Inf (at least one)."""
    a = np.array(a)
    flat = a.reshape(-1)
    count = max(1, int(fraction * flat.size))
    where = rng.choice(flat.size, count, replace=False)
    flat[where] = rng.choice([np.nan, np.inf, -np.inf], count)
    return a


def _assert_same(got, want, rtol, atol, what):
    """Equal values with NaN and +-Inf at the same places."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN")
    np.testing.assert_array_equal(np.where(np.isinf(want), want, 0), np.where(np.isinf(got), got, 0),
                                  err_msg=f"{what}: Inf")
    scale = max(1.0, float(np.max(np.abs(want), where=np.isfinite(want), initial=0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=what)


def check_against_reference(fn, args, rng, *, rtol=2e-5, atol=2e-5, special=(0,), special_gradients=True):
    """``fn`` (as dispatched: the fast path) equals ``fn`` under ``reference_only`` in values and in the gradient
    with respect to every argument, on finite arguments and with NaN / Inf in each argument listed in ``special``;
    and the fast program is not the reference's. ``special_gradients=False``: with special values, compare the
    values only.
    NaN and +-Inf in the input (argument 0) must give NaN and +-Inf at the same places in the values and in
    every gradient. A NaN or Inf in the kernel meets zeros that one formulation multiplies and another skips
    (``0 * Inf``; XLA:CPU's own algorithms disagree there too: see :mod:`cnnjax.ops.fast`), so with special
    values in another argument the values and gradients must agree wherever both are finite.
    """
    args = [np.asarray(a, np.float32) for a in args]
    y_shape = jax.eval_shape(fn, *args).shape
    cotangent = rng.uniform(-1, 1, y_shape).astype(np.float32)
    inputs, cases = [args], ["finite"]
    for i in special:
        with_specials = list(args)
        with_specials[i] = _special_values(rng, args[i])
        inputs.append(with_specials)
        cases.append(f"NaN/Inf in argument {i}")
    fast_jaxpr, fast_out = _run(fn, inputs, cotangent, reference=False)
    ref_jaxpr, ref_out = _run(fn, inputs, cotangent, reference=True)
    assert fast_jaxpr != ref_jaxpr, "the dispatch did not take a fast path for this case"
    for case, (y, grads), (y_ref, grads_ref) in zip(cases, fast_out, ref_out):
        pairs = [(np.asarray(y), np.asarray(y_ref), f"{case}: values")]
        if case == "finite" or special_gradients:
            pairs += [(np.asarray(g), np.asarray(w), f"{case}: gradient with respect to argument {i}")
                      for i, (g, w) in enumerate(zip(grads, grads_ref))]
        for g, w, what in pairs:
            if case in ("finite", "NaN/Inf in argument 0"):
                _assert_same(g, w, rtol, atol, what)
            else:
                both = np.isfinite(g) & np.isfinite(w)
                scale = max(1.0, float(np.abs(w[both]).max(initial=0)))
                np.testing.assert_allclose(g[both], w[both], rtol=rtol, atol=atol * scale, err_msg=what)


def _array(rng, shape):
    return rng.uniform(-1, 1, shape).astype(np.float32)


# ----------------------------------------------------------------------------------------------- banded GEMM


@st.composite
def banded_case(draw):
    """Dense, stride 1, fewer than FEW_INPUT_CHANNELS input channels; one channel half of the time."""
    nd = draw(st.integers(1, 3))
    c_in = draw(st.sampled_from([1, 1, 1, 2, 3, banded.FEW_INPUT_CHANNELS - 1]))
    window = tuple(draw(st.integers(1, 3 if nd == 3 else 5)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nd))
    spatial = tuple(max(1, d * (k - 1) + 1 - lo - hi) + draw(st.integers(0, 4 if nd == 3 else 9))
                    for k, d, (lo, hi) in zip(window, dilation, pads))
    return (draw(st.integers(1, 2)), *spatial, c_in), (*window, c_in, draw(st.integers(1, 4))), dilation, pads


@SETTINGS(8)
@given(banded_case(), st.integers(0, 2**16))
@example(((1, 8, 8, 1), (3, 3, 1, 2), (2, 1), ((1, 1), (1, 1))), 0)  # one channel, dilation on the first axis
@example(((1, 8, 9, 1), (3, 3, 1, 2), (1, 2), ((0, 1), (2, 0))), 1)  # one channel, dilation on the last axis
@example(((2, 14, 14, 6), (5, 5, 6, 4), (1, 1), ((0, 0), (0, 0))), 2)  # LeNet-5 conv2: the gathered dX
def test_banded_gemm_equals_reference(case, seed):
    x_shape, k_shape, dilation, pads = case
    assert banded.applies(x_shape, k_shape, (1,) * len(dilation), pads, dilation, 1)
    rng = np.random.default_rng(seed)
    check_against_reference(lambda x, k: ops.conv(x, k, padding=pads, dilation=dilation),
                            [_array(rng, x_shape), _array(rng, k_shape)], rng, special=(0, 1))


def test_banded_gemm_one_nan_pixel_reaches_only_its_windows():
    """Issue 15's finding: one NaN pixel of a (1, 8, 8, 1) input gives 9 NaN outputs (3x3 SAME), as lax does;
    one Inf pixel gives Inf (not NaN) where the kernel taps are positive."""
    x = np.zeros((1, 8, 8, 1), np.float32)
    x[0, 3, 4, 0] = np.nan
    k = np.ones((3, 3, 1, 1), np.float32)
    y = np.asarray(jax.jit(lambda x: ops.conv(x, k, padding=1))(x))
    assert np.isnan(y).sum() == 9
    x[0, 3, 4, 0] = np.inf
    y = np.asarray(jax.jit(lambda x: ops.conv(x, k, padding=1))(x))
    assert np.isinf(y).sum() == 9 and not np.isnan(y).any()


# --------------------------------------------------------------------------------------------------- depthwise


@st.composite
def depthwise_case(draw):
    nd = draw(st.integers(1, 3))
    channels = draw(st.integers(2, 5))
    multiplier = draw(st.sampled_from([1, 1, 2]))
    window = tuple(draw(st.integers(1, 3 if nd == 3 else 4)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nd))
    spatial = tuple(max(1, d * (k - 1) + 1 - lo - hi) + draw(st.integers(0, 4 if nd == 3 else 8))
                    for k, d, (lo, hi) in zip(window, dilation, pads))
    x_shape = (draw(st.integers(1, 2)), *spatial, channels)
    return x_shape, (*window, channels, multiplier), stride, dilation, pads


@SETTINGS(8)
@given(depthwise_case(), st.integers(0, 2**16))
@example(((2, 9, 9, 4), (3, 3, 4, 1), (2, 2), (1, 1), ((1, 1), (1, 1))), 0)  # MobileNet's strided block
@example(((1, 10, 3), (3, 3, 2), (1,), (3,), ((3, 3),)), 1)  # 1-D, multiplier 2, dilated
def test_depthwise_equals_reference(case, seed):
    x_shape, k_shape, stride, dilation, pads = case
    grouped_shape = (*k_shape[:-2], 1, k_shape[-2] * k_shape[-1])
    assert depthwise.applies(x_shape, grouped_shape, x_shape[-1])
    rng = np.random.default_rng(seed)
    check_against_reference(
        lambda x, k, b: ops.depthwise_conv(x, k, b, stride=stride, padding=pads, dilation=dilation),
        [_array(rng, x_shape), _array(rng, k_shape), _array(rng, (k_shape[-2] * k_shape[-1],))],
        rng, special=(0, 1))


@SETTINGS(4)
@given(depthwise_case(), st.integers(0, 2**16))
def test_separable_equals_reference(case, seed):
    x_shape, k_shape, stride, dilation, pads = case
    rng = np.random.default_rng(seed)
    mid = k_shape[-2] * k_shape[-1]
    check_against_reference(
        lambda x, k, p: ops.separable_conv(x, k, p, stride=stride, padding=pads, dilation=dilation),
        [_array(rng, x_shape), _array(rng, k_shape), _array(rng, (mid, 3))], rng, special=(0,))


def test_depthwise_kernel_gradient_reads_materialized_input_and_output_gradient():
    """The depthwise kernel gradient's nine per-tap sums (batch 16: two groups of ``BATCH_FOLD`` = 8 images)
    each read two buffers, the materialized input and output gradient, not their elementwise producers (here
    the arrays ``a``, ``b``), which XLA had recomputed inside them."""
    def loss(kernel, a, b):
        x = jax.nn.relu(jax.nn.relu(a * 2.0 + b) * 3.0 + a)
        return jnp.sum(jax.nn.relu(ops.depthwise_conv(x, kernel, padding=1) * a + b) ** 2)

    assert depthwise.BATCH_FOLD == 8
    args = (jnp.ones((3, 3, 8, 1)), jnp.ones((16, 16, 16, 8)), jnp.ones((16, 16, 16, 8)))
    entry = jax.jit(jax.grad(loss)).lower(*args).compile().as_text()
    entry = entry[entry.index("ENTRY"):]
    parameters = {m.group(1) for m in re.finditer(r"%(\S+) = \S+ parameter\(\d+\)", entry)}
    tap_sums = [line for line in entry.splitlines() if re.search(r"= f32\[2,16,(1,)?16,8\]\S* fusion\(", line)]
    assert len(tap_sums) == 9, tap_sums
    for line in tap_sums:
        operands = [o.strip().lstrip("%") for o in re.search(r" fusion\((.*?)\), kind", line).group(1).split(",")]
        assert len(operands) == 2 and not parameters & set(operands), operands


@SETTINGS(4)
@given(st.integers(9, 20), st.integers(0, 2**16))
def test_depthwise_kernel_gradient_of_batches_past_one_group(batch, seed):
    """Batches of more than ``BATCH_FOLD`` images, whole groups or not (zero-padded), against the reference."""
    rng = np.random.default_rng(seed)
    check_against_reference(lambda x, k: ops.depthwise_conv(x, k, padding=1),
                            [_array(rng, (batch, 5, 6, 3)), _array(rng, (3, 3, 3, 1))], rng, special=(0, 1))


# ----------------------------------------------------------------------------------------------------- grouped


@st.composite
def grouped_case(draw):
    """Groups of 2, 3 (one dense conv with a block-diagonal kernel) or 9 channels (a conv per group)."""
    nd = draw(st.integers(1, 2))
    groups = draw(st.integers(2, 4))
    c_in, c_out = groups * draw(st.sampled_from([2, 3, 9])), groups * draw(st.integers(1, 3))
    window = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    pads = tuple((draw(st.integers(0, 1)), draw(st.integers(0, 1))) for _ in range(nd))
    spatial = tuple(max(1, d * (k - 1) + 1 - lo - hi) + draw(st.integers(0, 6))
                    for k, d, (lo, hi) in zip(window, dilation, pads))
    return (draw(st.integers(1, 2)), *spatial, c_in), (*window, c_in // groups, c_out), stride, dilation, pads, groups


@SETTINGS(8)
@given(grouped_case(), st.integers(0, 2**16))
@example(((2, 6, 6, 8), (3, 3, 2, 8), (1, 1), (1, 1), ((1, 1), (1, 1)), 4), 0)  # ResNet-20 grouped:4, 1st stage
@example(((1, 7, 6, 16), (3, 3, 4, 32), (2, 2), (1, 1), ((1, 1), (1, 1)), 4), 1)  # block-diagonal, fast.strided
@example(((1, 7, 6, 64), (3, 3, 16, 8), (2, 2), (1, 1), ((1, 1), (1, 1)), 4), 2)  # groups of 16: fast.strided each
def test_grouped_equals_reference(case, seed):
    x_shape, k_shape, stride, dilation, pads, groups = case
    assert grouped.applies(x_shape, k_shape, groups)
    rng = np.random.default_rng(seed)
    check_against_reference(
        lambda x, k: ops.conv(x, k, stride=stride, padding=pads, dilation=dilation, groups=groups),
        [_array(rng, x_shape), _array(rng, k_shape)], rng, special=(0, 1))


def test_block_diagonal_kernel_and_one_nan_pixel_stays_in_its_group():
    """The block-diagonal kernel holds each group's kernel on its diagonal block and zeros elsewhere; a NaN
    (or Inf) pixel of one group's channel reaches only that group's outputs, although the dense conv
    multiplies it by the other groups' zeros."""
    rng = np.random.default_rng(0)
    k = _array(rng, (3, 3, 2, 8))
    dense = np.asarray(grouped.block_diagonal(jnp.asarray(k), 4))
    want = np.zeros((3, 3, 8, 8), np.float32)
    for g in range(4):
        want[:, :, 2 * g:2 * g + 2, 2 * g:2 * g + 2] = k[..., 2 * g:2 * g + 2]
    np.testing.assert_array_equal(dense, want)
    assert grouped.block_diagonal_applies((1, 8, 8, 8), 4) and not grouped.block_diagonal_applies((1, 8, 8, 64), 4)
    for special in (np.nan, np.inf):
        x = _array(rng, (1, 8, 8, 8))
        x[0, 3, 4, 5] = special  # channel 5: group 2
        y = np.asarray(jax.jit(lambda x, k: ops.conv(x, k, padding=1, groups=4))(x, np.abs(k)))
        bad = ~np.isfinite(y)
        assert bad.sum() == 9 * 2 and bad[..., 4:6].sum() == 18, special
        assert np.isnan(y).any() == np.isnan(special)


# ----------------------------------------------------------------------------------------------------- strided


@st.composite
def strided_case(draw):
    """Dense, undilated, stride > 1 on some axis (strides up to 3, also larger than the kernel: phases that
    no tap reaches), >= MIN_INPUT_CHANNELS input channels."""
    nd = draw(st.integers(1, 2))
    window = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    if all(s == 1 for s in stride):
        stride = (2, *stride[1:])
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nd))
    spatial = tuple(max(1, k - lo - hi) + draw(st.integers(0, 7)) for k, (lo, hi) in zip(window, pads))
    c_in = strided.MIN_INPUT_CHANNELS + draw(st.integers(0, 2))
    return (draw(st.integers(1, 2)), *spatial, c_in), (*window, c_in, draw(st.integers(1, 3))), stride, pads


@SETTINGS(8)
@given(strided_case(), st.integers(0, 2**16))
@example(((2, 8, 8, 8), (3, 3, 8, 4), (2, 2), ((1, 1), (1, 1))), 0)  # ResNet's downsampling 3x3 conv
@example(((2, 7, 7, 8), (1, 1, 8, 4), (2, 2), ((0, 0), (0, 0))), 1)  # its 1x1 projection: one phase per axis
@example(((1, 9, 6, 9), (2, 3, 9, 2), (3, 1), ((0, 1), (2, 0))), 2)  # stride 3 > 2 taps; a stride-1 axis
def test_strided_equals_reference(case, seed):
    x_shape, k_shape, stride, pads = case
    assert strided.applies(x_shape, stride, (1,) * len(stride), 1)
    rng = np.random.default_rng(seed)
    check_against_reference(lambda x, k: ops.conv(x, k, stride=stride, padding=pads),
                            [_array(rng, x_shape), _array(rng, k_shape)], rng, special=(0, 1))


# ------------------------------------------------------------------------------------- direct conv (C++, FFI)


@st.composite
def direct_case(draw):
    """Dense 2-D, C_out a multiple of 16 (one to four vector registers per block); C_in a multiple of 16 in
    part of the cases (the stride-1 input gradient by the C++ loop too) and C_in = 20 (full tiles of the kernel
    gradient and a rest); padding up to k (past k - 1 the input gradient takes the fallback); widths past 16
    (several pixel blocks per row and a last partial one)."""
    window = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if draw(st.booleans()) else (1, 1)
    pads = tuple((draw(st.integers(0, k)), draw(st.integers(0, k))) for k in window)
    extra = (draw(st.integers(0, 6)), draw(st.integers(0, 22)))
    spatial = tuple(max(1, k - lo - hi) + e for k, (lo, hi), e in zip(window, pads, extra))
    c_in = draw(st.sampled_from([1, 3, 6, 16, 20, 32]))
    c_out = draw(st.sampled_from([16, 32, 48, 64]))
    return (draw(st.integers(1, 3)), *spatial, c_in), (*window, c_in, c_out), stride, pads


@SETTINGS(10)
@given(direct_case(), st.integers(0, 2**16))
@example(((2, 8, 8, 16), (3, 3, 16, 16), (1, 1), ((1, 1), (1, 1))), 0)  # ResNet-20's 3x3 convs
@example(((2, 14, 14, 6), (5, 5, 6, 16), (1, 1), ((0, 0), (0, 0))), 1)  # LeNet-5's conv2
@example(((2, 9, 9, 16), (3, 3, 16, 32), (2, 2), ((1, 1), (1, 1))), 2)  # ResNet's downsampling conv
@example(((2, 7, 7, 32), (1, 1, 32, 64), (2, 2), ((0, 0), (0, 0))), 3)  # its 1x1 projection
@example(((17, 3, 19, 20), (2, 3, 20, 48), (1, 1), ((2, 1), (0, 3))), 4)  # 17 images in 16 parts; pads past k - 1
@example(((1, 4, 7, 16), (3, 3, 16, 64), (1, 1), ((1, 1), (1, 1))), 5)  # 7 = a block of 6 pixels and one of 1
@example(((2, 6, 7, 16), (3, 3, 16, 16), (1, 1), ((0, 2), (2, 1))), 6)  # uneven pads: the C++ input gradient's
@example(((2, 1, 2, 1), (4, 1, 1, 16), (1, 1), ((4, 2), (0, 0))), 0)  # low pad past k - 1 (openxla/xla#48713)
def test_direct_conv_equals_reference(case, seed):
    x_shape, k_shape, stride, pads = case
    assert direct.applies(x_shape, k_shape, stride, pads, (1, 1), 1, jnp.float32)
    rng = np.random.default_rng(seed)
    check_against_reference(lambda x, k: ops.conv(x, k, stride=stride, padding=pads),
                            [_array(rng, x_shape), _array(rng, k_shape)], rng, special=(0, 1))


# ------------------------------------------------------------------------------ BatchNorm's sums (C++, FFI)


@st.composite
def batch_norm_case(draw):
    """(N, C), (N, W, C) or (N, H, W, C); rows from 1 to past 512 (several ranges of the C++ sums)."""
    spatial = draw(st.lists(st.integers(1, 12), min_size=0, max_size=2))
    return (draw(st.integers(1, 9)), *spatial, draw(st.sampled_from([1, 3, 16, 24, 64])))


def _batch_norm(x, scale, bias):
    return ops.batch_normalize(x, *ops.batch_statistics(x), scale, bias, epsilon=1e-3)


@SETTINGS(8)
@given(batch_norm_case(), st.integers(0, 2**16))
@example((128, 8, 8, 16), 0)  # a ResNet-20 BatchNorm at batch 128 (8192 rows: 16 ranges)
@example((3, 1), 1)  # one channel, three rows
def test_batch_norm_equals_reference(shape, seed):
    rng = np.random.default_rng(seed)
    x = _array(rng, shape) * 3 + 1
    check_against_reference(_batch_norm, [x, _array(rng, shape[-1:]), _array(rng, shape[-1:])], rng,
                            rtol=1e-4, atol=1e-4)


def test_batch_norm_backward_sums_over_x_itself_not_a_centred_copy():
    """The scale's gradient ``sum_r dY (X - mean)`` is one C++ pass over ``dY`` and ``X`` (``centered_dot``), bit
    for bit the C++ ``channel_dot`` over a centred copy (the formulation before it, the oracle here)."""
    rng = np.random.default_rng(0)
    a, x = _array(rng, (64, 5, 5, 24)), _array(rng, (64, 5, 5, 24)) * 3 + 1
    m = jnp.mean(x, (0, 1, 2))
    np.testing.assert_array_equal(jax.jit(channels._centered_dot_p.bind)(a, x, m),
                                  jax.jit(lambda a, x, m: channels._dot_p.bind(a, x - m))(a, x, m))
    loss = jax.grad(lambda x, s: jnp.sum(jnp.sin(_batch_norm(x, s, s))), argnums=(0, 1))
    compiled = jax.jit(loss).lower(x, m).compile().as_text()
    assert "cnnjax_channel_centered_dot" in compiled


# -------------------------------------------------------------------------------------------------- transposed


@st.composite
def transpose_case(draw):
    nd = draw(st.integers(1, 2))
    groups = draw(st.sampled_from([1, 1, 2]))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    window = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    spatial = tuple(draw(st.integers(2, 6)) for _ in range(nd))
    # H_out = (H - 1) S - 2 P + D (k - 1) + op + 1 >= 1 bounds the padding (P > D (k - 1): the output is cropped)
    padding = tuple(draw(st.integers(0, ((h - 1) * s + d * (k - 1)) // 2))
                    for k, d, s, h in zip(window, dilation, stride, spatial))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    return ((draw(st.integers(1, 2)), *spatial, c_in), (*window, c_out // groups, c_in),
            dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups))


@SETTINGS(6)
@given(transpose_case(), st.integers(0, 2**16))
@example(((2, 5, 5, 4), (3, 3, 2, 4), dict(stride=2, padding=1, output_padding=1, dilation=1, groups=1)), 0)
@example(((1, 4, 3, 2), (1, 2, 2, 2), dict(stride=(3, 2), padding=1, output_padding=(2, 1), dilation=1, groups=1)),
         1)  # a 1-tap axis with stride 3: phases that no tap reaches; P > D (k - 1) crops
@example(((1, 5, 4), (3, 2, 4), dict(stride=2, padding=0, output_padding=1, dilation=2, groups=2)), 2)  # gcd(S, D) = 2
def test_conv_transpose_equals_reference(case, seed):
    x_shape, k_shape, kwargs = case
    rng = np.random.default_rng(seed)
    check_against_reference(lambda x, k, b: ops.conv_transpose(x, k, b, **kwargs),
                            [_array(rng, x_shape), _array(rng, k_shape), _array(rng, (k_shape[-2] * kwargs["groups"],))],
                            rng, special=(0, 1))


# -------------------------------------------------------------------------------------------- tiled max pool


@SETTINGS(6)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**16), st.booleans())
@example(2, 2, 0, True)  # LeNet-5's 2x2 pool, with ties
def test_tiled_max_pool_equals_reference(nd, k, seed, ties):
    rng = np.random.default_rng(seed)
    window = tuple(int(v) for v in rng.integers(1, k + 1, nd))
    shape = (2, *[w * int(rng.integers(1, 4)) + int(rng.integers(0, w)) for w in window], 3)
    x = rng.integers(-2, 3, shape).astype(np.float32) if ties else _array(rng, shape)
    # a NaN's gradient: the tiled path gives it to the NaN, as PyTorch does (reduce_window's select_and_scatter
    # to another cell): test_local_and_pooling.py::test_max_pool_gradient_goes_to_a_nan_like_torch
    check_against_reference(lambda x: ops.max_pool(x, window), [x], rng, special_gradients=False)


# ----------------------------------------------------------------------------------------- forward mode = reverse


FORWARD_REVERSE_CASES = {
    "banded one channel": (lambda x, k: ops.conv(x, k, padding=1, dilation=(2, 1)), (1, 6, 7, 1), (3, 3, 1, 2)),
    "banded few channels": (lambda x, k: ops.conv(x, k, padding=1), (1, 5, 5, 3), (3, 3, 3, 2)),
    "depthwise": (lambda x, k: ops.depthwise_conv(x, k, stride=2, padding=1), (1, 6, 6, 3), (3, 3, 3, 2)),
    "grouped": (lambda x, k: ops.conv(x, k, padding=1, groups=2), (1, 4, 4, 4), (3, 3, 2, 4)),
    "transposed": (lambda x, k: ops.conv_transpose(x, k, stride=2, padding=1), (1, 3, 3, 2), (3, 3, 2, 2)),
    "strided": (lambda x, k: ops.conv(x, k, stride=2, padding=1), (1, 5, 6, 8), (3, 3, 8, 2)),
    "direct": (lambda x, k: ops.conv(x, k, padding=1), (1, 3, 4, 16), (3, 3, 16, 16)),
    "direct strided": (lambda x, k: ops.conv(x, k, stride=2, padding=1), (1, 5, 6, 8), (3, 3, 8, 16)),
    "batch norm": (lambda x, k: _batch_norm(x, k, 0.5 * k), (2, 3, 3, 4), (4,)),
    "tiled max pool": (lambda x, k: ops.max_pool(x * k.sum(), 2), (1, 4, 6, 2), (1,)),
}


#: Fast paths with a custom VJP (reverse mode only): depthwise.
REVERSE_ONLY = ("depthwise",)


@pytest.mark.parametrize("name", sorted(FORWARD_REVERSE_CASES))
def test_jacfwd_equals_jacrev_and_the_reference_jacobian(name):
    """Forward mode equals reverse mode on the fast path, and both equal the reference's (an independent
    formulation: a custom rule's JVP and its transpose could agree with each other and both be wrong); a
    reverse-only path refuses forward mode with JAX's TypeError."""
    fn, x_shape, k_shape = FORWARD_REVERSE_CASES[name]
    rng = np.random.default_rng(3)
    x, k = jnp.asarray(_array(rng, x_shape)), jnp.asarray(_array(rng, k_shape))
    if name == "tiled max pool":
        x = jnp.round(x * 2)  # ties: the gradient goes to the first maximum
    with fast.reference_only():
        want = jax.jit(lambda x, k: jax.jacrev(fn, argnums=(0, 1))(x, k))(x, k)
    rev = jax.jit(lambda x, k: jax.jacrev(fn, argnums=(0, 1))(x, k))(x, k)
    if name in REVERSE_ONLY:  # a custom VJP: forward mode raises, the reference has it
        with pytest.raises(TypeError, match="forward-mode"):
            jax.jacfwd(fn, argnums=(0, 1))(x, k)
        fwd = rev
    else:
        fwd = jax.jit(lambda x, k: jax.jacfwd(fn, argnums=(0, 1))(x, k))(x, k)
    for f, r, w in zip(fwd, rev, want):
        np.testing.assert_allclose(np.asarray(f), np.asarray(w), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(r), np.asarray(w), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------------ dispatch


def test_dispatch_takes_the_reference_where_no_fast_path_serves():
    """Stride-1 dense convs with >= 8 channels, strided ones with fewer or with a dilation, many groups,
    integer pooling and reference_only() all give the plain reference program (the convs on their
    materialized input)."""
    def same_program(fn, *shapes, dtype=np.float32, reference_fn=None):
        args = [np.zeros(s, dtype) for s in shapes]
        with fast.reference_only():
            reference = str(jax.make_jaxpr(lambda *a: (reference_fn or fn)(*a))(*args))
        return str(jax.make_jaxpr(lambda *a: fn(*a))(*args)) == reference

    m = fast.materialized
    assert same_program(lambda x, k: ops.conv(x, k, padding=1), (2, 8, 8, 8), (3, 3, 8, 4),
                        reference_fn=lambda x, k: ops.conv(m(x), k, padding=1))
    assert same_program(lambda x, k: ops.conv(x, k, stride=2), (2, 8, 8, 3), (3, 3, 3, 4),
                        reference_fn=lambda x, k: ops.conv(m(x), k, stride=2))
    assert same_program(lambda x, k: ops.conv(x, k, stride=2, dilation=2), (2, 9, 9, 8), (3, 3, 8, 4),
                        reference_fn=lambda x, k: ops.conv(m(x), k, stride=2, dilation=2))
    assert not same_program(lambda x, k: ops.conv(x, k, stride=2), (2, 9, 9, 8), (3, 3, 8, 4),
                            reference_fn=lambda x, k: ops.conv(m(x), k, stride=2))
    assert same_program(lambda x, k: ops.conv(x, k, groups=32), (1, 6, 6, 64), (3, 3, 2, 32),
                        reference_fn=lambda x, k: ops.conv(m(x), k, groups=32))
    assert not same_program(lambda x, k: ops.conv(x, k, padding=1), (2, 8, 8, 8), (3, 3, 8, 4))
    assert same_program(lambda x: ops.max_pool(x, 2), (1, 4, 4, 2), dtype=np.int32)
    assert same_program(lambda x: ops.max_pool(x, 3, stride=2), (1, 7, 7, 2))
    assert not same_program(lambda x, k: ops.conv(x, k, groups=2), (1, 6, 6, 8), (3, 3, 4, 8))


# ---------------------------------------------------------------- materialized conv input

@pytest.mark.parametrize("dtype", [jnp.float8_e5m2, jnp.float16, jnp.bfloat16, jnp.float32])
def test_materialized_is_the_identity_bit_for_bit_with_identity_derivatives(dtype):
    """``x / 1`` with the 1 built from each element's bits: every value (+-Inf, -0, subnormals, the extremes)
    comes back with the same bits and a NaN as a NaN (float8 divides in float32, which may change a NaN's
    payload); tangent and cotangent pass unchanged."""
    info = jnp.finfo(dtype)
    special = [np.nan, np.inf, -np.inf, 0.0, -0.0, float(info.smallest_subnormal), -float(info.smallest_subnormal),
               float(info.tiny), float(info.max), float(info.min), 1.0, -1.5]
    rng = np.random.default_rng(0)
    x = jnp.asarray(np.concatenate([special, rng.standard_normal(52) * 100]), dtype).reshape(4, 16)
    bits = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[jnp.dtype(dtype).itemsize]
    out = jax.jit(fast.materialized)(x)
    nan = np.isnan(np.asarray(x, np.float32))
    np.testing.assert_array_equal(np.isnan(np.asarray(out, np.float32)), nan)
    np.testing.assert_array_equal(np.asarray(jax.lax.bitcast_convert_type(out, bits))[~nan],
                                  np.asarray(jax.lax.bitcast_convert_type(x, bits))[~nan])
    t = jnp.asarray(rng.standard_normal((4, 16)), dtype)
    _, tangent = jax.jvp(fast.materialized, (x,), (t,))
    np.testing.assert_array_equal(tangent, t)
    np.testing.assert_array_equal(jax.vjp(fast.materialized, x)[1](t)[0], t)


def test_kernel_gradient_reads_the_materialized_input_not_its_producers():
    """The reason for :func:`fast.materialized`: without it XLA:CPU recomputes the conv input's elementwise
    producers inside the transposed copy its kernel gradient reads (here from the two arrays ``a``, ``b``);
    with it, that copy reads the one buffer the forward conv reads."""
    def loss(kernel, a, b):
        x = jax.nn.relu(jax.nn.relu(a * 2.0 + b) * 3.0 + a)
        return jnp.sum(ops.conv(x, kernel, padding=1) ** 2)

    def operands_of_kernel_gradients_input(hlo):
        lines = {m.group(1): m.group(2) for m in re.finditer(r"^\s*(?:ROOT )?%(\S+) = \S+ \w[\w-]*\((.*?)\)", hlo,
                                                              re.M)}
        forward_input = re.search(r"= f32\[8,16,16,8\]\S* convolution\(%([^,]+),", hlo).group(1)
        lhs = re.search(r"= f32\[8,3,3,8\]\S* convolution\(%([^,]+),", hlo).group(1)
        parameters = {int(m.group(2)): m.group(1) for m in re.finditer(r"%(\S+) = \S+ parameter\((\d+)\)", hlo)}
        return forward_input, [o.strip().lstrip("%") for o in lines[lhs].split(",")], parameters

    args = (jnp.ones((3, 3, 8, 8)), jnp.ones((8, 16, 16, 8)), jnp.ones((8, 16, 16, 8)))
    with fast.reference_only():
        hlo = jax.jit(jax.grad(loss)).lower(*args).compile().as_text()
    forward_input, operands, parameters = operands_of_kernel_gradients_input(hlo[hlo.index("ENTRY"):])
    assert operands == [parameters[1], parameters[2]]  # a and b: the producers, recomputed in transposed order
    hlo = jax.jit(jax.grad(loss)).lower(*args).compile().as_text()
    forward_input, operands, _ = operands_of_kernel_gradients_input(hlo[hlo.index("ENTRY"):])
    assert operands == [forward_input]
    args = [jnp.asarray(np.random.default_rng(i).standard_normal(a.shape), jnp.float32) for i, a in enumerate(args)]
    with fast.reference_only():
        reference = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*args)
    for got, want in zip(jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*args), reference):
        np.testing.assert_array_equal(got, want)
