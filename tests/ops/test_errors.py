"""Bad input raises a clear ValueError naming the argument, before any tracing (DESIGN.md conventions)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import ops

X = jnp.ones((1, 5, 5, 4))
K = jnp.ones((3, 3, 4, 8))


@pytest.mark.parametrize(
    "x_shape,k_shape,kwargs,match",
    [
        # kernel larger than the padded input
        ((1, 5, 5, 4), (7, 3, 4, 8), {}, r"kernel of size 7 .* larger than the padded input 5 \+ 0 \+ 0"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(dilation=3), r"extent 7\) on spatial axis 0 is larger"),
        ((1, 5, 5, 4), (7, 7, 4, 8), dict(padding=(0, 1)), "larger than the padded input"),
        # groups not dividing the channels
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(groups=3), "groups=3 must divide in_channels=4"),
        ((1, 5, 5, 4), (3, 3, 1, 6), dict(groups=2), r"kernel.shape=\(3, 3, 1, 6\) needs in_channels/groups=2"),
        ((1, 5, 5, 4), (3, 3, 1, 6), dict(groups=4), "groups=4 must divide out_channels=6"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(groups=0), "groups=0 must be a positive int"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(groups=2.0), "groups=2.0 must be a positive int"),
        ((1, 5, 5, 4), (3, 3, 2, 8), dict(groups=1), r"needs in_channels/groups=4"),
        # stride / dilation < 1 or malformed
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(stride=0), "stride=0 must be >= 1"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(stride=(1, -1)), r"stride=\(1, -1\) must be >= 1"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(stride=(1, 1, 1)), "stride=.* must be an int or a sequence of 2 ints"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(stride=1.5), "stride=1.5 must be an int"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(dilation=0), "dilation=0 must be >= 1"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(dilation=True), "dilation=True must be an int"),
        # negative or malformed padding
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(padding=-1), "padding=-1 must not be negative"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(padding=[(1, -1), 0]), "must not be negative"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(padding=(1, 2, 3)), "padding=.* is malformed"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(padding=[(1, 2, 3), 0]), "is malformed"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(padding=1.5), "is malformed"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(padding=None), "is malformed"),
        # unknown padding or pad_mode name
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(padding="HALF"), "padding='HALF' is unknown; allowed: VALID, SAME, FULL"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(pad_mode="mirror"), "pad_mode='mirror' is unknown; allowed: constant"),
        ((1, 5, 5, 4), (3, 3, 4, 8), dict(pad_mode="mirror", padding=0), "pad_mode='mirror' is unknown"),
        # rank mismatch between x and kernel
        ((1, 5, 4), (3, 3, 4, 8), {}, r"x.shape=\(1, 5, 4\) has rank 3 but kernel.shape=\(3, 3, 4, 8\) needs rank 4"),
        ((5, 5, 4), (3, 3, 4, 8), {}, "has rank 3"),
        ((1, 5, 5, 4), (4, 8), {}, "kernel.shape=.* must have 3 to 5 axes"),
        ((1, 5, 5, 5, 5, 5, 4), (3, 3, 3, 3, 3, 4, 8), {}, "must have 3 to 5 axes"),
        # empty axes
        ((1, 5, 5, 4), (0, 3, 4, 8), {}, "must not have an empty axis"),
        ((1, 5, 0, 4), (3, 3, 4, 8), {}, "must not have an empty spatial or channel axis"),
    ],
)
def test_conv_rejects(x_shape, k_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ops.conv(jnp.ones(x_shape), jnp.ones(k_shape), **kwargs)


def test_bias_shape():
    with pytest.raises(ValueError, match=r"bias.shape=\(4,\) must be \(out_channels,\)=\(8,\)"):
        ops.conv(X, K, jnp.ones(4))


def test_errors_are_raised_before_tracing():
    """The checks run on static shapes, so a jitted caller gets the same clear error at trace time."""
    with pytest.raises(ValueError, match="groups=3 must divide"):
        jax.jit(lambda x, k: ops.conv(x, k, groups=3))(X, K)
    with pytest.raises(ValueError, match="larger than the padded input"):
        jax.eval_shape(lambda x: ops.conv(x, jnp.ones((9, 9, 4, 8))), X)


def test_accepted_spellings():
    """What is not an error: NumPy ints, lists, lower-case names, per-axis pairs, 1-D bare (lo, hi)."""
    assert ops.conv(X, K, stride=np.int64(2)).shape == (1, 2, 2, 8)
    assert ops.conv(X, K, padding="same").shape == (1, 5, 5, 8)
    assert ops.conv(X, K, padding=[1, (0, 3)]).shape == (1, 5, 6, 8)
    assert ops.conv(X, K, padding="FULL").shape == (1, 7, 7, 8)
    assert ops.conv(jnp.ones((1, 5, 2)), jnp.ones((3, 2, 1)), padding=(0, 2)).shape == (1, 5, 1)
    assert ops.conv(jnp.ones((1, 5, 5, 5, 2)), jnp.ones((3, 3, 3, 2, 1)), stride=(1, 2, 1)).shape == (1, 3, 2, 3, 1)


def test_integer_images_become_float():
    x = jnp.arange(25, dtype=jnp.uint8).reshape(1, 5, 5, 1)
    y = ops.conv(x, jnp.ones((3, 3, 1, 1)) / 9)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y)[0, 0, 0, 0], 6.0, rtol=1e-6)  # mean of 0,1,2,5,6,7,10,11,12


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: ops.depthwise_conv(X, jnp.ones((3, 3, 3, 1))), r"must be \(\*k, C, multiplier\) with C=4"),
        (lambda: ops.depthwise_conv(X, jnp.ones((3, 3, 4, 1)), stride=0), "stride"),
        (lambda: ops.depthwise_conv(X, jnp.ones((3, 3, 4, 1)), jnp.ones(3)), "bias"),
        (lambda: ops.depthwise_conv(jnp.ones((1, 5, 4)), jnp.ones((3, 3, 4, 1))), "rank"),
        (lambda: ops.separable_conv(X, jnp.ones((3, 3, 4, 2)), jnp.ones((4, 5))), r"must be \(C \* multiplier, K\)"),
        (lambda: ops.separable_conv(X, jnp.ones((3, 3, 4, 1)), jnp.ones((2, 2, 4, 5))), "pointwise_kernel"),
        (lambda: ops.separable_conv(X, jnp.ones((3, 3, 4, 1)), jnp.ones((4, 5)), jnp.ones(4)), "bias"),
        (lambda: ops.separable_conv(X, jnp.ones((3, 3, 4, 1)), jnp.ones((4, 5)), padding="X"), "unknown"),
        (lambda: ops.pad(X, [(1, 1)]), "pads="),
        (lambda: ops.pad(X, [(1, 1), (-1, 0)]), "non-negative"),
        (lambda: ops.pad(X, [(1, 1), (1, 1)], mode="symmetric"), "pad_mode='symmetric' is unknown"),
    ],
)
def test_other_ops_reject(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: ops.batch_statistics(jnp.ones(5)), r"x.shape=\(5,\) must be \(N, ..., C\)"),
        (lambda: ops.batch_normalize(jnp.ones(4), jnp.zeros(4), jnp.ones(4)), r"x.shape=\(4,\) must be \(N, ..., C\)"),
        (lambda: ops.batch_normalize(jnp.ones((2, 4)), jnp.zeros(3), jnp.ones(4)),
         r"mean.shape=\(3,\) must be \(channels,\)=\(4,\)"),
        (lambda: ops.batch_normalize(jnp.ones((2, 4)), jnp.zeros(4), jnp.ones((1, 4))),
         r"var.shape=\(1, 4\) must be \(channels,\)=\(4,\)"),
        (lambda: ops.batch_normalize(jnp.ones((2, 4)), jnp.zeros(4), jnp.ones(4), scale=jnp.ones(2)),
         r"scale.shape=\(2,\) must be"),
        (lambda: ops.batch_normalize(jnp.ones((2, 4)), jnp.zeros(4), jnp.ones(4), bias=jnp.ones(5)),
         r"bias.shape=\(5,\) must be"),
        (lambda: ops.batch_normalize(jnp.ones((2, 4)), jnp.zeros(4), jnp.ones(4), epsilon=-1e-5),
         r"epsilon=-1e-05 must be >= 0"),
    ],
)
def test_batch_norm_ops_refuse_bad_shapes(call, match):
    with pytest.raises(ValueError, match=match):
        call()
