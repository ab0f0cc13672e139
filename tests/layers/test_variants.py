"""The conv switch: conv_layer(variant, features, kernel_size, ...) builds each variant by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import ops
from cnnjax.layers import CONV_VARIANTS, conv_layer, parse_conv_variant
from tests.layers.test_layers import random_params

NON_DEFORM = ["standard", "separable", "grouped:4", "grouped", "dilated:2", "dilated", "locally_connected"]


CASES = [(1, "SAME"), (2, "SAME"), (1, "VALID")]


@pytest.mark.parametrize(
    "variant,strides,padding", [(v, *CASES[i % 3]) for i, v in enumerate(NON_DEFORM)] + [("standard", 1, "VALID")]
)
def test_every_variant_maps_to_features(variant, strides, padding):
    dilation = parse_conv_variant(variant)[1] if variant.startswith("dilated") else 1
    out = ops.output_size(8, 3, strides, padding, dilation)
    assert out == {(1, "SAME"): 8, (2, "SAME"): 4, (1, "VALID"): 6 if dilation == 1 else 4}[strides, padding]
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
    layer = conv_layer(variant, 8, 3, strides=strides, padding=padding)
    params = random_params(layer, x)
    y = jax.jit(layer.apply)(params, x)
    assert y.shape == (2, out, out, 8)
    assert bool(jnp.all(jnp.isfinite(y)))


def test_variant_parameter_counts():
    x = jnp.zeros((1, 8, 8, 4))

    def count(variant, **kw):
        params = jax.eval_shape(conv_layer(variant, 8, 3, **kw).init, jax.random.key(0), x)
        return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))

    A = ops.arithmetic
    assert count("standard") == A.conv_params(4, 8, 3)
    assert count("grouped:4") == A.conv_params(4, 8, 3, groups=4)
    assert count("dilated:3") == A.conv_params(4, 8, 3)
    assert count("separable") == A.separable_params(4, 8, 3)
    assert count("locally_connected") == A.locally_connected_params(4, 8, 3, 8)
    assert count("locally_connected", padding="VALID") == A.locally_connected_params(4, 8, 3, 6)
    assert count("standard", use_bias=False) == 4 * 9 * 8


def test_dilated_spec_sets_dilation():
    x = jax.random.normal(jax.random.key(0), (1, 9, 9, 1))
    layer = conv_layer("dilated:4", 1, 3, padding="VALID", use_bias=False)
    params = random_params(layer, x)
    y = jax.jit(layer.apply)(params, x)
    assert y.shape == (1, 1, 1, 1)  # 3x3 dilated 4 spans 9x9
    k = params["params"]["kernel"]
    np.testing.assert_allclose(y, ops.conv(x, k, dilation=4), rtol=1e-6)


def test_dtype_and_name():
    x = jnp.ones((1, 6, 6, 4), jnp.float32)
    for variant in NON_DEFORM:
        layer = conv_layer(variant, 4, 3, dtype=jnp.bfloat16, name="c")
        assert layer.name == "c"
        params = jax.eval_shape(layer.init, jax.random.key(0), x)
        assert jax.eval_shape(layer.apply, params, x).dtype == jnp.bfloat16


def test_parse_and_errors():
    assert parse_conv_variant("grouped:4") == ("grouped", 4)
    assert parse_conv_variant("dilated:3") == ("dilated", 3)
    assert parse_conv_variant("standard") == ("standard", None)
    assert set(CONV_VARIANTS) >= {"standard", "separable", "grouped", "dilated", "deformable", "locally_connected"}
    for name in CONV_VARIANTS:  # every listed name is itself a valid spec
        parse_conv_variant(name)
    for bad in ["conv", "grouped:0", "grouped:x", "dilated:-1", "standard:2", "", None]:
        with pytest.raises(ValueError, match="allowed: standard, separable, grouped:G, dilated:D"):
            conv_layer(bad, 8, 3)


def test_grouped_not_dividing_channels_raises_at_call():
    x = jnp.ones((1, 8, 8, 6))
    layer = conv_layer("grouped:4", 8, 3)
    with pytest.raises(ValueError, match="groups=4 must divide in_channels=6"):
        jax.eval_shape(layer.init, jax.random.key(0), x)
    with pytest.raises(ValueError, match="groups=4 must divide features=6"):
        jax.eval_shape(conv_layer("grouped:4", 6, 3).init, jax.random.key(0), jnp.ones((1, 8, 8, 8)))


@pytest.mark.parametrize("variant", ["deformable", "deformable_v2"])
def test_deformable_variants(variant):
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
    layer = conv_layer(variant, 8, 3)
    assert layer.modulated == (variant == "deformable_v2")
    params = jax.jit(layer.init)(jax.random.key(1), x)  # the real initialisers, once
    assert jax.jit(layer.apply)(params, x).shape == (2, 8, 8, 8)
