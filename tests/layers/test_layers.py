"""Flax layers own parameters (He init by default) and call the pure ops."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import layers, ops
from cnnjax.ops import arithmetic

KEY = jax.random.key(0)


def random_params(module, x, seed=0):
    """Parameters of the module's shapes, drawn by NumPy: skips compiling the initialisers (slow on a
    loaded 2-core machine) in tests that check the call, not the initialisation."""
    shapes = jax.eval_shape(module.init, KEY, x)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)


def _init_apply(module, x):
    """Parameters and the jitted call; compared with the eager op to 1e-6 (the same sums, accumulated in
    another order under jit: differences ~3e-7 on values ~1)."""
    params = random_params(module, x)
    return params["params"], jax.jit(module.apply)(params, x)


def test_conv_params_and_call():
    x = jax.random.normal(KEY, (2, 7, 7, 4))
    m = layers.Conv(8, 3, strides=2, padding=1, groups=2, dilation=1)
    p, y = _init_apply(m, x)
    assert set(p) == {"kernel", "bias"}
    assert p["kernel"].shape == (3, 3, 2, 8) and p["bias"].shape == (8,)
    np.testing.assert_allclose(y, ops.conv(x, p["kernel"], p["bias"], stride=2, padding=1, groups=2), rtol=1e-6, atol=1e-6)
    assert sum(v.size for v in jax.tree.leaves(p)) == arithmetic.conv_params(4, 8, 3, groups=2)


def test_conv_1d_and_3d():
    _, y = _init_apply(layers.Conv(3, 5, padding="VALID"), jnp.ones((1, 9, 2)))
    assert y.shape == (1, 5, 3)
    _, y = _init_apply(layers.Conv(3, (1, 2, 3), padding="VALID"), jnp.ones((1, 4, 4, 4, 2)))
    assert y.shape == (1, 4, 3, 2, 3)


def test_depthwise_conv_layer():
    x = jax.random.normal(KEY, (2, 6, 6, 3))
    p, y = _init_apply(layers.DepthwiseConv(3, depth_multiplier=2, padding="SAME"), x)
    assert p["kernel"].shape == (3, 3, 3, 2) and p["bias"].shape == (6,)
    np.testing.assert_allclose(y, ops.depthwise_conv(x, p["kernel"], p["bias"], padding="SAME"), rtol=1e-6, atol=1e-6)
    assert sum(v.size for v in jax.tree.leaves(p)) == arithmetic.depthwise_params(3, 3, multiplier=2)


def test_separable_conv_layer():
    x = jax.random.normal(KEY, (2, 6, 6, 3))
    p, y = _init_apply(layers.SeparableConv(5, 3, strides=2), x)
    assert p["depthwise_kernel"].shape == (3, 3, 3, 1)
    assert p["pointwise_kernel"].shape == (3, 5) and p["bias"].shape == (5,)
    want = ops.separable_conv(x, p["depthwise_kernel"], p["pointwise_kernel"], p["bias"], stride=2, padding="SAME")
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    assert sum(v.size for v in jax.tree.leaves(p)) == arithmetic.separable_params(3, 5, 3)


def test_conv_transpose_layer():
    x = jax.random.normal(KEY, (2, 4, 4, 6))
    m = layers.ConvTranspose(4, 3, strides=2, padding=1, output_padding=1, groups=2)
    p, y = _init_apply(m, x)
    assert p["kernel"].shape == (3, 3, 2, 6)
    assert y.shape == (2, 8, 8, 4)
    want = ops.conv_transpose(x, p["kernel"], p["bias"], stride=2, padding=1, output_padding=1, groups=2)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


def test_locally_connected_layer():
    x = jax.random.normal(KEY, (2, 6, 5, 3))
    p, y = _init_apply(layers.LocallyConnected(4, (3, 2), strides=(1, 2)), x)
    assert p["kernel"].shape == (4, 2, 3, 2, 3, 4) and p["bias"].shape == (4, 2, 4)
    want = ops.locally_connected(x, p["kernel"], p["bias"], kernel_size=(3, 2), stride=(1, 2))
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    assert sum(v.size for v in jax.tree.leaves(p)) == arithmetic.locally_connected_params(3, 4, (3, 2), (4, 2))


@pytest.mark.parametrize(
    "module,x_shape,name,fan_in",
    [
        (layers.Conv(64, 3, groups=4), (1, 8, 8, 64), "kernel", 9 * 16),
        (layers.DepthwiseConv(5, depth_multiplier=8), (1, 8, 8, 128), "kernel", 25),
        (layers.ConvTranspose(64, 3), (1, 8, 8, 64), "kernel", 9 * 64),
        (layers.LocallyConnected(32, 3, padding="VALID"), (1, 10, 10, 16), "kernel", 9 * 16),
    ],
)
def test_he_initialisation(module, x_shape, name, fan_in):
    """He (Kaiming) normal: std = sqrt(2 / fan_in), fan-in counted per output unit."""
    params = jax.jit(module.init)(KEY, jnp.zeros(x_shape))["params"]
    std = float(jnp.std(params[name]))
    assert std == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.1)
    if "bias" in params:
        assert float(jnp.abs(params["bias"]).max()) == 0.0


def test_dtype_policy():
    x = jnp.ones((1, 6, 6, 4))
    for m in [layers.Conv(4, 3), layers.DepthwiseConv(3), layers.SeparableConv(4), layers.ConvTranspose(4, 3),
              layers.LocallyConnected(4, 3)]:
        m16 = m.clone(dtype=jnp.bfloat16)
        params = jax.eval_shape(m16.init, KEY, x)
        assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(params))  # param_dtype stays float32
        assert jax.eval_shape(m16.apply, params, x).dtype == jnp.bfloat16


def test_layer_errors():
    x = jnp.ones((1, 6, 6, 4))
    with pytest.raises(ValueError, match="groups=3 must divide in_channels=4"):
        jax.eval_shape(layers.Conv(6, 3, groups=3).init, KEY, x)
    with pytest.raises(ValueError, match="groups=2 must divide out_channels=5"):
        jax.eval_shape(layers.Conv(5, 3, groups=2).init, KEY, x)
    with pytest.raises(ValueError, match="features=0 must be a positive int"):
        jax.eval_shape(layers.SeparableConv(0).init, KEY, x)
    with pytest.raises(ValueError, match="kernel_size"):
        jax.eval_shape(layers.Conv(4, (3, 3, 3)).init, KEY, x)
    with pytest.raises(ValueError, match="depth_multiplier"):
        jax.eval_shape(layers.DepthwiseConv(3, depth_multiplier=0).init, KEY, x)
    with pytest.raises(ValueError, match="groups=3 must divide"):
        jax.eval_shape(layers.ConvTranspose(6, 3, groups=3).init, KEY, x)
    with pytest.raises(ValueError, match=r"features=3 must be >= in_channels=4 \(a depthwise filter sees one"):
        jax.eval_shape(layers.DepthwiseConv(3, features=3).init, KEY, x)
    with pytest.raises(ValueError, match="depth_multiplier=2 must be 1 when features=8 is given"):
        jax.eval_shape(layers.DepthwiseConv(3, depth_multiplier=2, features=8).init, KEY, x)


def test_a_layer_error_names_the_layer_its_variant_and_channels():
    class Net(nn.Module):
        groups: int = 4
        dilation: int = 2

        @nn.compact
        def __call__(self, x):
            x = layers.Conv(8, 3, name="first")(x)
            return layers.Conv(6, 3, padding="VALID", groups=self.groups, dilation=self.dilation, name="second")(x)

    x = jnp.ones((1, 9, 9, 4))
    with pytest.raises(ValueError) as err:
        jax.eval_shape(Net().init, KEY, x)
    assert str(err.value).splitlines()[0] == (
        "layer 'second' (Conv groups=4 dilation=2; in_channels=8, features=6): groups=4 must divide out_channels=6"
    )
    # An op's own check (a window larger than the input) is named the same way.
    with pytest.raises(ValueError, match=r"^layer 'second' \(Conv dilation=5; in_channels=8, features=6\): kernel of size 3 \(dilation 5"):
        jax.eval_shape(Net(groups=1, dilation=5).init, KEY, x)


def test_pooling_modules():
    x = jax.random.normal(KEY, (2, 6, 6, 3))
    seq = nn.Sequential([layers.MaxPool(2), layers.AvgPool(3, 1, "SAME"), layers.SumPool(3), layers.GlobalAvgPool()])
    y = seq.apply({}, x)
    want = ops.global_avg_pool(ops.sum_pool(ops.avg_pool(ops.max_pool(x, 2), 3, 1, "SAME"), 3))
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    assert layers.GlobalMaxPool(keepdims=True).apply({}, x).shape == (2, 1, 1, 3)


def test_pooling_by_name():
    assert layers.pooling("max") is layers.MaxPool and layers.pooling(" AVG ") is layers.AvgPool
    assert set(layers.POOLING) == {"max", "avg"}
    for bad in ("min", "", None):
        with pytest.raises(ValueError, match=f"^pool={bad!r} is unknown; allowed: max, avg$"):
            layers.pooling(bad)


def test_layers_in_a_jitted_train_step():
    """A layer works under jit + grad (the way models use it)."""
    m = layers.SeparableConv(4, 3)
    x = jax.random.normal(KEY, (2, 6, 6, 3))
    params = random_params(m, x)

    @jax.jit
    def step(p):
        loss, g = jax.value_and_grad(lambda q: jnp.mean(m.apply(q, x) ** 2))(p)
        return jax.tree.map(lambda a, b: a - 0.1 * b, p, g), loss

    p1, l0 = step(params)
    _, l1 = step(p1)
    assert float(l1) < float(l0)
