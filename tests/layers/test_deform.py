"""DeformConv layer: parameters, untrained layer == standard convolution, learning signal, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.layers.deform import DeformConv
from cnnjax.ops.conv import conv


def _x(shape=(2, 9, 8, 4), seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _randomise_bias(params, seed=1):
    b = params["params"]["bias"]
    params["params"]["bias"] = jnp.asarray(np.random.default_rng(seed).normal(size=b.shape), b.dtype)
    return params


@pytest.mark.parametrize(
    "cfg",
    [
        dict(kernel_size=3),
        dict(kernel_size=(3, 2), strides=2, padding=1, groups=2, offset_groups=2),
        dict(kernel_size=3, strides=(1, 2), padding="VALID", dilation=2, offset_groups=4),
    ],
)
@pytest.mark.parametrize("modulated", [False, True])
def test_untrained_layer_equals_standard_conv(cfg, modulated):
    x = _x()
    layer = DeformConv(features=6, modulated=modulated, **cfg)
    params = _randomise_bias(jax.jit(layer.init)(jax.random.PRNGKey(0), x))
    p = params["params"]
    taps = np.prod(cfg["kernel_size"] if isinstance(cfg["kernel_size"], tuple) else (3, 3))
    og = cfg.get("offset_groups", 1)
    assert p["kernel"].shape == (*np.broadcast_to(cfg["kernel_size"], (2,)), 4 // cfg.get("groups", 1), 6)
    assert p["offset_conv"]["kernel"].shape[-1] == og * taps * (3 if modulated else 2)
    assert not np.any(p["offset_conv"]["kernel"]) and not np.any(p["offset_conv"]["bias"])
    y = jax.jit(layer.apply)(params, x)
    want = conv(
        x, p["kernel"], p["bias"], stride=cfg.get("strides", 1), padding=cfg.get("padding", "SAME"),
        dilation=cfg.get("dilation", 1), groups=cfg.get("groups", 1),
    )
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_v2_with_paper_sigmoid_starts_at_half_the_convolution():
    x = _x()
    layer = DeformConv(features=5, modulated=True, mask_scale=1.0)
    params = _randomise_bias(jax.jit(layer.init)(jax.random.PRNGKey(0), x))
    p = params["params"]
    y = jax.jit(layer.apply)(params, x)
    want = conv(x, p["kernel"], padding="SAME")
    np.testing.assert_allclose(y - p["bias"], 0.5 * want, rtol=1e-5, atol=1e-5)


def test_offsets_receive_gradient_and_change_the_output():
    x = _x(seed=3)
    layer = DeformConv(features=3, modulated=True, offset_groups=2)
    params = jax.jit(layer.init)(jax.random.PRNGKey(0), x)

    @jax.jit
    def step(params):
        """The gradient, and the output and loss before and after a small step along it."""

        def loss(params):
            y = layer.apply(params, x)
            return jnp.sum(y**2), y

        (before, y), grads = jax.value_and_grad(loss, has_aux=True)(params)
        moved = jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)
        after, y_moved = loss(moved)
        return grads, before, after, y, y_moved

    grads, before, after, y, y_moved = step(params)
    g_off = grads["params"]["offset_conv"]["kernel"]
    assert np.all(np.isfinite(g_off)) and np.abs(g_off).sum() > 0
    # a small step along the gradient moves the offsets off the grid and changes the output
    assert np.abs(np.asarray(y_moved - y)).max() > 0
    assert float(after) < float(before)


def test_dtype_bfloat16_and_jit():
    x = _x()
    layer = DeformConv(features=4, dtype=jnp.bfloat16)
    params = jax.jit(layer.init)(jax.random.PRNGKey(0), x)
    assert params["params"]["kernel"].dtype == jnp.float32
    y = jax.jit(layer.apply)(params, x)
    assert y.dtype == jnp.bfloat16 and y.shape == (2, 9, 8, 4)
    y32 = jax.jit(DeformConv(features=4).apply)(params, x)
    np.testing.assert_allclose(np.asarray(y, np.float32), y32, rtol=5e-2, atol=5e-2)


def test_bad_configuration_errors():
    x = _x()
    with pytest.raises(ValueError, match=r"offset_groups=3 must be a positive int dividing in_channels=4"):
        DeformConv(features=4, offset_groups=3).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match=r"\(DeformConv groups=3; in_channels=4, features=6\): groups=3 must divide in_channels=4"):
        DeformConv(features=6, groups=3).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match=r"must be \(N, H, W, C_in\)"):
        DeformConv(features=4).init(jax.random.PRNGKey(0), x[0])
