"""The lectures' worked examples, to the digit (seeds 000, 001, 002, 003, 004)."""

import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import ops
from cnnjax.ops import arithmetic

# Seeds 000 and 001 share this 5x5 input and 3x3 kernel (the kernel is the subscripts on the input cells).
IMAGE = np.array(
    [[3, 3, 2, 1, 0], [0, 0, 1, 3, 1], [3, 1, 2, 2, 3], [2, 0, 0, 2, 2], [2, 0, 0, 0, 1]], np.float32
)
KERNEL = np.array([[0, 1, 2], [2, 2, 0], [0, 1, 2]], np.float32)


def conv2d_single(image, kernel, **kwargs):
    return np.asarray(ops.conv(image[None, :, :, None], kernel[:, :, None, None], **kwargs))[0, :, :, 0]


def test_seed_000_valid_convolution():
    """Seed 000, "2D свертка": 5x5 input, 3x3 kernel, stride 1, no padding."""
    out = conv2d_single(IMAGE, KERNEL)
    np.testing.assert_array_equal(out, [[12, 12, 17], [10, 17, 19], [9, 6, 14]])
    # the formula (I*F)[m,n] = sum_ij w_ij x_{m+i-1, n+j-1} (+ b) by hand for the first cell
    assert out[0, 0] == sum(KERNEL[i, j] * IMAGE[i, j] for i in range(3) for j in range(3))
    out_b = conv2d_single(IMAGE, KERNEL, bias=np.array([0.5], np.float32))
    np.testing.assert_array_equal(out_b, out + 0.5)


def test_seed_001_zero_padded_stride_2():
    """Seed 001, "Padding": the same input zero-padded to 7x7, stride 2."""
    out = conv2d_single(IMAGE, KERNEL, stride=2, padding=1)
    np.testing.assert_array_equal(out, [[6, 17, 3], [8, 17, 13], [6, 4, 4]])
    assert out.shape == (arithmetic.output_size(5, 3, stride=2, padding=1),) * 2


def test_seed_003_s_star_w():
    """Seed 003: S (5x5) * W (3x3), C_{k1,k2} = sum_t S_{k1+t1, k2+t2} W_{t1,t2}."""
    S = np.array(
        [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]], np.float32
    )
    W = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.float32)
    expected = np.array(
        [[sum(S[k1 + t1, k2 + t2] * W[t1, t2] for t1 in range(3) for t2 in range(3)) for k2 in range(3)]
         for k1 in range(3)]
    )
    out = conv2d_single(S, W)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


def test_seed_003_one_dimensional_convolve():
    """Seed 003's ``convolve(sequence, weights)`` in NumPy equals the 1-D conv."""

    def convolve(sequence, weights):  # verbatim from the lecture (plus the return)
        convolution = np.zeros(len(sequence) - len(weights) + 1)
        for i in range(convolution.shape[0]):
            convolution[i] = np.sum(weights * sequence[i : i + len(weights)])
        return convolution

    s = np.array([2, 3, 5, 7, 11, 13, 17], np.float32)
    w = np.array([-1, 2, 0.5], np.float32)
    got = np.asarray(ops.conv(s[None, :, None], w[:, None, None]))[0, :, 0]
    np.testing.assert_allclose(got, convolve(s, w), rtol=1e-6)


def test_seed_002_x_pattern_correlation():
    """Seed 002: the 9x9 "X" image correlated with its 3x3 diagonal feature, divided by 9."""
    image = -np.ones((9, 9), np.float32)
    for i in range(1, 8):
        image[i, i] = image[i, 8 - i] = 1
    feature = image[0:3, 0:3].copy()
    feature[0, 0] = 1  # the diagonal feature [[1,-1,-1],[-1,1,-1],[-1,-1,1]]
    np.testing.assert_array_equal(feature, [[1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    out = conv2d_single(image, feature) / 9
    slide = np.array(
        [
            [0.77, -0.11, 0.11, 0.33, 0.55, -0.11, 0.33],
            [-0.11, 1.00, -0.11, 0.33, -0.11, 0.11, -0.11],
            [0.11, -0.11, 1.00, -0.33, 0.11, -0.11, 0.55],
            [0.33, 0.33, -0.33, 0.55, -0.33, 0.33, 0.33],
            [0.55, -0.11, 0.11, -0.33, 1.00, -0.11, 0.11],
            [-0.11, 0.11, -0.11, 0.33, -0.11, 1.00, -0.11],
            [0.33, -0.11, 0.55, 0.33, 0.11, -0.11, 0.77],
        ]
    )
    # the slide truncates to 2 decimals (7/9 = 0.777... shows as 0.77): the counts of matching cells are exact
    np.testing.assert_array_equal(out * 9, np.round(slide * 9))
    truncated = np.sign(out) * np.floor(np.abs(out.astype(np.float64)) * 100 + 1e-4) / 100
    np.testing.assert_allclose(truncated, slide, atol=1e-9)


def test_seed_004_multichannel_formula():
    """Seed 004: Y^k_ij = sum_m sum_uv X^m_{i+u-1, j+v-1} F^{mk}_uv + b^k, K output maps."""
    rng = np.random.default_rng(0)
    X = rng.integers(-3, 4, (4, 5, 3)).astype(np.float32)  # H, W, M
    F = rng.integers(-2, 3, (2, 3, 3, 2)).astype(np.float32)  # p, q, M, K
    b = np.array([1.0, -2.0], np.float32)
    Y = np.zeros((3, 3, 2), np.float32)
    for k in range(2):
        for i in range(3):
            for j in range(3):
                Y[i, j, k] = sum(
                    X[i + u, j + v, m] * F[u, v, m, k] for m in range(3) for u in range(2) for v in range(3)
                ) + b[k]
    np.testing.assert_array_equal(np.asarray(ops.conv(X[None], F, b))[0], Y)


def test_seed_004_grouped_formula():
    """Seed 004, grouped conv: output map k = (s-1) K/g + k' sees only input maps of group s."""
    rng = np.random.default_rng(1)
    g, M, K = 2, 4, 6
    X = rng.normal(size=(1, 5, 5, M)).astype(np.float32)
    F = rng.normal(size=(3, 3, M // g, K)).astype(np.float32)
    out = np.asarray(ops.conv(X, F, groups=g))
    for s in range(g):
        part = ops.conv(X[..., s * M // g : (s + 1) * M // g], F[..., s * K // g : (s + 1) * K // g])
        np.testing.assert_allclose(out[..., s * K // g : (s + 1) * K // g], part, rtol=1e-6, atol=1e-6)


def test_receptive_fields_and_dilation():
    """Seeds 001/004: two 3x3 convs see 5x5; 3x3 kernels dilated 1, 2, 4 span 3, 5, 9."""
    assert arithmetic.receptive_field([(3, 1), (3, 1)])[-1].size == 5
    assert [arithmetic.effective_kernel_size(3, d) for d in (1, 2, 4)] == [3, 5, 9]
    # the same, measured on the op: an impulse spreads over exactly that many cells
    for d, span in ((1, 3), (2, 5), (4, 9)):
        impulse = jnp.zeros((1, 21, 21, 1)).at[0, 10, 10, 0].set(1.0)
        y = ops.conv(impulse, jnp.ones((3, 3, 1, 1)), padding="SAME", dilation=d)
        rows = np.nonzero(np.asarray(y)[0, :, 10, 0])[0]
        assert rows.max() - rows.min() + 1 == span
    impulse = jnp.zeros((1, 21, 21, 1)).at[0, 10, 10, 0].set(1.0)
    y = ops.conv(ops.conv(impulse, jnp.ones((3, 3, 1, 1)), padding="SAME"), jnp.ones((3, 3, 1, 1)), padding="SAME")
    assert int(np.count_nonzero(np.asarray(y))) == 25  # 5 x 5


@pytest.mark.parametrize("h,m,s,p", [(32, 5, 1, 0), (28, 5, 1, 2), (7, 3, 2, 1), (224, 7, 2, 3), (10, 4, 3, 0)])
def test_output_size_formula_matches_the_op(h, m, s, p):
    """Seed 000: H_out = floor((H_in - M + 2P) / S) + 1, checked on the op's actual output."""
    y = ops.conv(jnp.zeros((1, h, h, 1)), jnp.zeros((m, m, 1, 1)), stride=s, padding=p)
    assert y.shape[1] == (h - m + 2 * p) // s + 1 == arithmetic.output_size(h, m, s, p)
