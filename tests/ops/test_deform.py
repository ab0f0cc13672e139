"""Deformable convolution: identities with the ordinary convolution, an independent NumPy oracle
(value and every gradient, float64), check_grads, chunking, and clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from cnnjax.ops.conv import conv
from cnnjax.ops.deform import deform_conv2d
from cnnjax.ops.padding import normalize_padding

# --------------------------------------------------------------------------------------------------
# Independent NumPy reference: nested loops over batch, position, tap, input channel, output channel;
# the sample is the seed-004 sum over ALL pixels of max(0,1-|a-s|) max(0,1-|b-t|) X[s,t].
# Gradients are derived analytically inside the same loops.


def _pads(padding, kh, kw, dilation):
    d = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
    return normalize_padding(padding, (kh, kw), d), d


def numpy_deform(x, off, kern, bias, mask, g_out, stride, padding, dilation, groups, offset_groups):
    """Returns (y, dx, doff, dkernel, dbias, dmask) for the loss sum(y * g_out)."""
    n, h, w, c_in = x.shape
    kh, kw, cpg, c_out = kern.shape
    s = (stride, stride) if isinstance(stride, int) else tuple(stride)
    pads, d = _pads(padding, kh, kw, dilation)
    h_out = (h + pads[0][0] + pads[0][1] - d[0] * (kh - 1) - 1) // s[0] + 1
    w_out = (w + pads[1][0] + pads[1][1] - d[1] * (kw - 1) - 1) // s[1] + 1
    og_size = c_in // offset_groups
    opg = c_out // groups
    rows = np.arange(h, dtype=np.float64)[:, None]
    cols = np.arange(w, dtype=np.float64)[None, :]
    y = np.zeros((n, h_out, w_out, c_out))
    dx, doff, dk = np.zeros_like(x), np.zeros_like(off), np.zeros_like(kern)
    dm = None if mask is None else np.zeros_like(mask)
    for b in range(n):
        for p in range(h_out):
            for q in range(w_out):
                for i in range(kh):
                    for j in range(kw):
                        tap = i * kw + j
                        for c in range(c_in):
                            og = c // og_size
                            a = p * s[0] - pads[0][0] + i * d[0] + off[b, p, q, (og * kh * kw + tap) * 2]
                            bb = q * s[1] - pads[1][0] + j * d[1] + off[b, p, q, (og * kh * kw + tap) * 2 + 1]
                            gy = np.maximum(0.0, 1.0 - np.abs(a - rows))
                            gx = np.maximum(0.0, 1.0 - np.abs(bb - cols))
                            weight = gy * gx  # (H, W)
                            # d weight / d a = sign(s - a) [|a - s| < 1] * gx
                            dgy = np.where(np.abs(a - rows) < 1, np.sign(rows - a), 0.0)
                            dgx = np.where(np.abs(bb - cols) < 1, np.sign(cols - bb), 0.0)
                            sample = np.sum(weight * x[b, :, :, c])
                            ds_da = np.sum(dgy * gx * x[b, :, :, c])
                            ds_db = np.sum(gy * dgx * x[b, :, :, c])
                            m = 1.0 if mask is None else mask[b, p, q, og * kh * kw + tap]
                            grp = c // cpg
                            for k in range(grp * opg, (grp + 1) * opg):
                                f = kern[i, j, c - grp * cpg, k]
                                y[b, p, q, k] += f * m * sample
                                gk = g_out[b, p, q, k]
                                dk[i, j, c - grp * cpg, k] += gk * m * sample
                                dx[b, :, :, c] += gk * f * m * weight
                                doff[b, p, q, (og * kh * kw + tap) * 2] += gk * f * m * ds_da
                                doff[b, p, q, (og * kh * kw + tap) * 2 + 1] += gk * f * m * ds_db
                                if mask is not None:
                                    dm[b, p, q, og * kh * kw + tap] += gk * f * sample
    db = None
    if bias is not None:
        y = y + bias
        db = g_out.sum(axis=(0, 1, 2))
    return y, dx, doff, dk, db, dm


def out_hw(h, w, kh, kw, stride, padding, dilation):
    s = (stride, stride) if isinstance(stride, int) else tuple(stride)
    pads, d = _pads(padding, kh, kw, dilation)
    return (
        (h + pads[0][0] + pads[0][1] - d[0] * (kh - 1) - 1) // s[0] + 1,
        (w + pads[1][0] + pads[1][1] - d[1] * (kw - 1) - 1) // s[1] + 1,
    )


# (N, H, W, C_in, C_out, kh, kw, stride, padding, dilation, groups, offset_groups, modulated, bias)
ORACLE_CONFIGS = [
    (1, 4, 5, 2, 3, 3, 3, 1, 1, 1, 1, 1, False, True),
    (2, 5, 4, 4, 2, 2, 3, (2, 1), ((1, 0), (0, 2)), 1, 2, 2, True, True),
    (1, 6, 5, 6, 4, 3, 2, 1, (2, 1), (2, 1), 2, 3, True, False),
    (2, 4, 4, 3, 3, 1, 2, 2, 0, 1, 1, 3, False, False),
    (0, 4, 4, 2, 2, 3, 3, 1, 1, 1, 1, 2, True, True),  # empty batch
    (1, 3, 6, 4, 4, 2, 2, (1, 2), 1, (1, 2), 2, 1, True, True),
    (1, 5, 5, 2, 2, 3, 3, 2, "SAME", 2, 1, 1, False, True),
]


def _random_case(cfg, seed, spread=2.5):
    n, h, w, c_in, c_out, kh, kw, stride, padding, dilation, groups, og, modulated, use_bias = cfg
    rng = np.random.default_rng(seed)
    ho, wo = out_hw(h, w, kh, kw, stride, padding, dilation)
    x = rng.normal(size=(n, h, w, c_in))
    off = rng.uniform(-spread, spread, size=(n, ho, wo, og * kh * kw * 2))
    kern = rng.normal(size=(kh, kw, c_in // groups, c_out))
    bias = rng.normal(size=(c_out,)) if use_bias else None
    mask = rng.uniform(0, 1, size=(n, ho, wo, og * kh * kw)) if modulated else None
    g = rng.normal(size=(n, ho, wo, c_out))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, offset_groups=og)
    return x, off, kern, bias, mask, g, kwargs


@pytest.mark.parametrize(
    "case, chunk_size",
    [(case, None) for case in range(len(ORACLE_CONFIGS))] + [(1, 3), (5, 4)],  # + chunked, with a remainder
)
def test_matches_numpy_reference_value_and_gradients_float64(case, chunk_size):
    cfg = ORACLE_CONFIGS[case]
    x, off, kern, bias, mask, g, kwargs = _random_case(cfg, seed=case)
    ref = numpy_deform(x, off, kern, bias, mask, g, **kwargs)
    with jax.enable_x64(True):
        args = [jnp.asarray(a) for a in (x, off, kern)]
        extra = {} if mask is None else {"mask": jnp.asarray(mask)}
        b = None if bias is None else jnp.asarray(bias)

        def f(x, off, kern, b, extra):
            return deform_conv2d(x, off, kern, b, chunk_size=chunk_size, **kwargs, **extra)

        y, vjp = jax.vjp(f, *args, b, extra)
        assert y.dtype == jnp.float64
        grads = vjp(jnp.asarray(g))
        y, grads = np.asarray(y), jax.tree.map(np.asarray, grads)
    np.testing.assert_allclose(y, ref[0], rtol=0, atol=1e-10)
    names = ["x", "offsets", "kernel"]
    for name, got, want in zip(names, grads[:3], ref[1:4]):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10, err_msg=f"d{name}")
    if bias is not None:
        np.testing.assert_allclose(grads[3], ref[4], rtol=0, atol=1e-10, err_msg="dbias")
    if mask is not None:
        np.testing.assert_allclose(grads[4]["mask"], ref[5], rtol=0, atol=1e-10, err_msg="dmask")


def test_numpy_reference_is_itself_consistent_with_finite_differences():
    """Guard the oracle: its analytic gradients agree with central differences of its own output."""
    cfg = (1, 3, 4, 2, 2, 2, 2, 1, 1, 1, 1, 2, True, True)
    x, off, kern, bias, mask, g, kwargs = _random_case(cfg, seed=11, spread=1.5)
    ref = numpy_deform(x, off, kern, bias, mask, g, **kwargs)
    eps = 1e-6

    def loss(x_, off_, kern_, mask_):
        return np.sum(numpy_deform(x_, off_, kern_, bias, mask_, g, **kwargs)[0] * g)

    for pos, arr, want in [(0, x, ref[1]), (1, off, ref[2]), (2, kern, ref[3]), (3, mask, ref[5])]:
        flat = np.random.default_rng(pos).choice(arr.size, size=min(6, arr.size), replace=False)
        for k in flat:
            idx = np.unravel_index(k, arr.shape)
            plus, minus = [x, off, kern, mask], [x, off, kern, mask]
            a1, a2 = arr.copy(), arr.copy()
            a1[idx] += eps
            a2[idx] -= eps
            plus[pos], minus[pos] = a1, a2
            fd = (loss(*plus) - loss(*minus)) / (2 * eps)
            np.testing.assert_allclose(want[idx], fd, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Identities with the ordinary convolution


CONV_COMBOS = [
    dict(stride=1, padding=0, dilation=1, groups=1),
    dict(stride=2, padding=1, dilation=1, groups=1),
    dict(stride=(1, 2), padding=((2, 0), (1, 1)), dilation=(2, 1), groups=2),
    dict(stride=1, padding="SAME", dilation=2, groups=4),
    dict(stride=3, padding=(1, 2), dilation=1, groups=2),
]


@pytest.mark.parametrize("combo", CONV_COMBOS)
@pytest.mark.parametrize("offset_groups", [1, 2])
def test_zero_offsets_equal_standard_conv(combo, offset_groups):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 8, 4)).astype(np.float32)
    kern = rng.normal(size=(3, 2, 4 // combo["groups"], 4)).astype(np.float32)
    bias = rng.normal(size=(4,)).astype(np.float32)
    want = conv(x, kern, bias, **combo)
    off = np.zeros((*want.shape[:3], offset_groups * 6 * 2), np.float32)
    got = deform_conv2d(x, off, kern, bias, offset_groups=offset_groups, **combo)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shift", [(1, 0), (0, -2), (-1, 3), (2, 2)])
def test_constant_integer_offset_equals_conv_of_shifted_input(shift):
    rng = np.random.default_rng(1)
    dy, dx = shift
    x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
    kern = rng.normal(size=(3, 3, 3, 5)).astype(np.float32)
    # Embed x in a zero canvas; the deformable conv with padding 1 samples x[p - 1 + i + dy, q - 1 + j + dx],
    # which is a VALID conv over the canvas window shifted by (dy, dx) (the zeros around x included).
    canvas = np.zeros((2, 7 + 16, 6 + 16, 3), np.float32)
    canvas[:, 8:15, 8:14] = x
    shifted = canvas[:, 7 + dy : 7 + dy + 9, 7 + dx : 7 + dx + 8]
    want = conv(shifted, kern, stride=1, padding=0)
    off = np.tile(np.array([dy, dx], np.float32), (*want.shape[:3], 9))
    got = deform_conv2d(x, off, kern, stride=1, padding=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_mask_of_ones_is_v1_and_mask_c_scales_pre_bias_output():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 6, 7, 4)).astype(np.float32)
    kern = rng.normal(size=(3, 3, 2, 6)).astype(np.float32)
    bias = rng.normal(size=(6,)).astype(np.float32)
    kw = dict(stride=1, padding=1, groups=2, offset_groups=2)
    off = rng.uniform(-2, 2, size=(2, 6, 7, 2 * 9 * 2)).astype(np.float32)
    v1 = deform_conv2d(x, off, kern, bias, **kw)
    ones = deform_conv2d(x, off, kern, bias, mask=np.ones((2, 6, 7, 18), np.float32), **kw)
    np.testing.assert_allclose(ones, v1, rtol=1e-6, atol=1e-6)
    c = 0.37
    scaled = deform_conv2d(x, off, kern, bias, mask=np.full((2, 6, 7, 18), c, np.float32), **kw)
    np.testing.assert_allclose(scaled - bias, c * (v1 - bias), rtol=1e-5, atol=1e-5)


def test_chunking_does_not_change_result_or_gradients():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(3, 5, 6, 4)), jnp.float32)
    off = jnp.asarray(rng.uniform(-2, 2, size=(3, 5, 6, 2 * 9 * 2)), jnp.float32)
    kern = jnp.asarray(rng.normal(size=(3, 3, 4, 3)), jnp.float32)
    mask = jnp.asarray(rng.uniform(size=(3, 5, 6, 18)), jnp.float32)

    def loss(chunk):
        def f(x, off, kern, mask):
            y = deform_conv2d(x, off, kern, padding=1, offset_groups=2, mask=mask, chunk_size=chunk)
            return jnp.sum(jnp.sin(y))

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3)))(x, off, kern, mask)

    ref = loss(None)  # one chunk (90 rows)
    for chunk in (7, 30):  # several chunks with a remainder (90 = 12 * 7 + 6), and without one
        got = loss(chunk)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize(
    "modulated, order", [(False, 1), (True, 1), pytest.param(True, 2, marks=pytest.mark.slow)]
)
def test_check_grads_at_non_integer_positions(modulated, order):
    rng = np.random.default_rng(4)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(1, 4, 5, 2)))
        # fractional parts in [0.2, 0.8]: away from the kinks of the bilinear weights
        off = jnp.asarray(rng.integers(-2, 2, size=(1, 5, 6, 16)) + rng.uniform(0.2, 0.8, size=(1, 5, 6, 16)))
        kern = jnp.asarray(rng.normal(size=(2, 2, 2, 3)))
        bias = jnp.asarray(rng.normal(size=(3,)))
        mask = jnp.asarray(rng.uniform(size=(1, 5, 6, 8)))

        if modulated:
            def f(x, off, kern, bias, mask):
                return deform_conv2d(x, off, kern, bias, padding=1, offset_groups=2, mask=mask)

            args = (x, off, kern, bias, mask)
        else:
            def f(x, off, kern, bias):
                return deform_conv2d(x, off, kern, bias, padding=1, offset_groups=2)

            args = (x, off, kern, bias)
        # reverse mode (order 2 too, marked slow: the custom backward is itself differentiable)
        check_grads(f, args, order=order, modes=["rev"], eps=1e-5, atol=1e-6, rtol=1e-6)


def test_jit_and_float32_defaults():
    """float32 in, float32 out (uint8 images become float32) under jit, with the values and the kernel gradient
    of the float64 NumPy loops: an independent computation, not the same program twice."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(2, 5, 5, 3)).astype(np.uint8)
    off = rng.normal(size=(2, 5, 5, 18)).astype(np.float32)
    kern = (rng.normal(size=(3, 3, 3, 4)) / 255).astype(np.float32)
    g = rng.normal(size=(2, 5, 5, 4))
    f = jax.jit(lambda x, o, k: deform_conv2d(x, o, k, padding=1))
    y = f(x, off, kern)
    assert y.shape == (2, 5, 5, 4) and y.dtype == jnp.float32
    want = numpy_deform(x.astype(np.float64), off, kern, None, None, g, stride=1, padding=1, dilation=1, groups=1,
                        offset_groups=1)
    np.testing.assert_allclose(y, want[0], rtol=1e-5, atol=1e-5)
    d_kernel = jax.jit(jax.grad(lambda k: jnp.sum(deform_conv2d(x, off, k, padding=1) * g)))(kern)
    assert d_kernel.dtype == jnp.float32
    np.testing.assert_allclose(d_kernel, want[3], rtol=1e-4, atol=1e-2)


def test_far_away_offsets_give_zero_and_zero_gradient():
    x = jnp.ones((1, 4, 4, 2))
    kern = jnp.ones((3, 3, 2, 1))
    off = jnp.full((1, 4, 4, 18), 1e6)
    y, grads = jax.value_and_grad(lambda x, o: deform_conv2d(x, o, kern, padding=1).sum(), argnums=(0, 1))(x, off)
    assert float(y) == 0.0
    assert not np.any(np.asarray(grads[0])) and not np.any(np.asarray(grads[1]))


# --------------------------------------------------------------------------------------------------
# Optional oracle: torchvision (not installed by default: a multi-GB CUDA wheel)


TORCHVISION_CASES = [  # (n, h, w, c_in, c_out, kh, kw, offset groups, groups, stride, padding, dilation, mask)
    (2, 6, 7, 4, 6, 3, 2, 2, 2, (1, 2), (1, 1), (2, 1), True),
    (1, 5, 5, 3, 2, 3, 3, 1, 1, (1, 1), (0, 0), (1, 1), False),
    (3, 8, 6, 6, 4, 2, 3, 3, 1, (2, 1), (2, 0), (1, 2), True),
]


@pytest.mark.parametrize("case", TORCHVISION_CASES)
def test_matches_torchvision_when_available(case):
    torch = pytest.importorskip("torch")
    tv_ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(6)
    n, h, w, c_in, c_out, kh, kw, og, groups, stride, padding, dilation, use_mask = case
    ho, wo = out_hw(h, w, kh, kw, stride, padding, dilation)
    x = rng.normal(size=(n, h, w, c_in))
    off = rng.uniform(-3, 3, size=(n, ho, wo, og * kh * kw * 2))  # many samples cross the image border
    kern = rng.normal(size=(kh, kw, c_in // groups, c_out))
    bias = rng.normal(size=(c_out,))
    mask = rng.uniform(size=(n, ho, wo, og * kh * kw)) if use_mask else np.ones((n, ho, wo, og * kh * kw))
    g = rng.normal(size=(n, ho, wo, c_out))
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    toff = torch.tensor(off.transpose(0, 3, 1, 2), requires_grad=True)
    tk = torch.tensor(kern.transpose(3, 2, 0, 1), requires_grad=True)
    tb = torch.tensor(bias, requires_grad=True)
    tm = torch.tensor(mask.transpose(0, 3, 1, 2), requires_grad=True)
    ty = tv_ops.deform_conv2d(tx, toff, tk, tb, stride=stride, padding=padding, dilation=dilation,
                              mask=tm if use_mask else None)
    ty.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    with jax.enable_x64(True):
        kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, offset_groups=og)
        y, vjp = jax.vjp(lambda *a: deform_conv2d(*a[:4], mask=a[4] if use_mask else None, **kwargs),
                         x, off, kern, bias, mask)
        dx, doff, dk, db, dm = (np.asarray(a) for a in vjp(jnp.asarray(g)))
        y = np.asarray(y)
    np.testing.assert_allclose(y, ty.detach().numpy().transpose(0, 2, 3, 1), atol=1e-8)
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(0, 2, 3, 1), atol=1e-8)
    np.testing.assert_allclose(doff, toff.grad.numpy().transpose(0, 2, 3, 1), atol=1e-8)
    np.testing.assert_allclose(dk, tk.grad.numpy().transpose(2, 3, 1, 0), atol=1e-8)
    np.testing.assert_allclose(db, tb.grad.numpy(), atol=1e-8)
    if use_mask:
        np.testing.assert_allclose(dm, tm.grad.numpy().transpose(0, 2, 3, 1), atol=1e-8)


# --------------------------------------------------------------------------------------------------
# Bad input


def _ok_inputs():
    x = np.zeros((2, 5, 5, 4), np.float32)
    off = np.zeros((2, 5, 5, 2 * 9 * 2), np.float32)
    kern = np.zeros((3, 3, 4, 6), np.float32)
    return x, off, kern


def test_error_offsets_wrong_shape_names_expected_shape():
    x, off, kern = _ok_inputs()
    with pytest.raises(ValueError, match=r"offsets.shape=\(2, 5, 5, 18\).*\(2, 5, 5, 36\)"):
        deform_conv2d(x, off[..., :18], kern, padding=1, offset_groups=2)
    with pytest.raises(ValueError, match=r"offsets.shape=.*\(2, 3, 3, 18\)"):
        deform_conv2d(x, off[..., :18], kern, padding=0)  # VALID: the output is 3x3


def test_error_mask_wrong_shape_names_expected_shape():
    x, off, kern = _ok_inputs()
    with pytest.raises(ValueError, match=r"mask.shape=\(2, 5, 5, 9\).*\(2, 5, 5, 18\)"):
        deform_conv2d(x, off, kern, padding=1, offset_groups=2, mask=np.ones((2, 5, 5, 9)))


def test_error_offset_groups_must_divide_channels():
    x, off, kern = _ok_inputs()
    with pytest.raises(ValueError, match=r"offset_groups=3 must divide in_channels=4"):
        deform_conv2d(x, np.zeros((2, 5, 5, 54)), kern, padding=1, offset_groups=3)
    with pytest.raises(ValueError, match=r"offset_groups=0"):
        deform_conv2d(x, off, kern, padding=1, offset_groups=0)


def test_error_kernel_groups_mismatch():
    x, off, kern = _ok_inputs()
    with pytest.raises(ValueError, match=r"kernel.shape=\(3, 3, 4, 6\).*\(3, 3, 2, 6\)"):
        deform_conv2d(x, off[..., :18], kern, padding=1, groups=2)
    with pytest.raises(ValueError, match=r"groups=4 must divide out_channels=6"):
        deform_conv2d(x, off[..., :18], kern[:, :, :1], padding=1, groups=4)
    with pytest.raises(ValueError, match=r"groups=3 must divide in_channels=4"):
        deform_conv2d(x, off[..., :18], kern, padding=1, groups=3)


def test_error_other_arguments():
    x, off, kern = _ok_inputs()
    with pytest.raises(ValueError, match=r"x.shape=\(5, 5, 4\) must be \(N, H, W, C_in\)"):
        deform_conv2d(x[0], off[0], kern, padding=1)
    with pytest.raises(ValueError, match=r"bias.shape=\(4,\) must be \(out_channels,\)=\(6,\)"):
        deform_conv2d(x, off[..., :18], kern, np.zeros(4), padding=1)
    with pytest.raises(ValueError, match=r"stride"):
        deform_conv2d(x, off[..., :18], kern, padding=1, stride=0)
    with pytest.raises(ValueError, match=r"larger than the padded input"):
        deform_conv2d(x[:, :2], off[..., :18], kern)
