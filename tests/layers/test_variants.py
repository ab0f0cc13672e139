"""The conv-variant registry: each spec builds its layer, and each layer computes what its variant means.

Every variant is checked against an independent computation with the layer's own parameters: PyTorch's
``conv2d`` (standard, grouped, dilated, separable), a loop over filters each convolving its one input
channel (depthwise), NumPy loops over output positions (locally connected) and over kernel taps with
bilinear sampling (deformable v1 / v2).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnjax import ops
from cnnjax.layers import CONV_VARIANTS, STANDARD, ConvVariant, conv_layer, conv_variant, parse_conv_variant
from tests.layers.test_layers import random_params

ALL_SPECS = ["standard", "depthwise", "separable", "grouped:2", "dilated:2", "deformable", "deformable_v2",
             "locally_connected"]
X = np.random.default_rng(0).normal(size=(2, 7, 7, 4))  # C_in = 4
FEATURES, STRIDE, PAD = 6, 2, 1  # K = 6: not a multiple of C_in (depthwise spreads 6 filters over 4 channels)


def torch_conv(x, kernel, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``(N, H, W, C)`` x ``(kh, kw, C / groups, K)`` with PyTorch (float64), back to NHWC."""
    xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(x, np.float64), -1, 1)))
    kt = torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(kernel, np.float64), (3, 2, 0, 1))))
    bt = None if bias is None else torch.from_numpy(np.asarray(bias, np.float64))
    y = F.conv2d(xt, kt, bt, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return np.moveaxis(y.numpy(), 1, -1)


def numpy_local(x, kernel, bias, stride, pad):
    """Locally connected: output cell ``(i, j)`` has its own ``(kh, kw, C, K)`` kernel and ``(K,)`` bias."""
    ho, wo, kh, kw = kernel.shape[:4]
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    y = np.zeros((x.shape[0], ho, wo, kernel.shape[-1]))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            y[:, i, j] = np.einsum("nuvc,uvck->nk", patch, kernel[i, j]) + bias[i, j]
    return y


def numpy_deform(x, offsets, kernel, bias, mask, stride, pad):
    """Deformable conv (one offset group): tap ``(i, j)`` of output ``(p, q)`` samples
    ``sum_st max(0, 1 - |a - s|) max(0, 1 - |b - t|) X[s, t]`` at ``a = p S - P + i + dy``, ``b = q S - P + j + dx``."""
    n, h, w, _ = x.shape
    kh, kw, _, k_out = kernel.shape
    ho, wo = offsets.shape[1:3]
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    y = np.zeros((n, ho, wo, k_out))
    for b in range(n):
        for p in range(ho):
            for q in range(wo):
                for i in range(kh):
                    for j in range(kw):
                        tap = i * kw + j
                        a = p * stride - pad + i + offsets[b, p, q, 2 * tap]
                        c = q * stride - pad + j + offsets[b, p, q, 2 * tap + 1]
                        weight = np.maximum(0, 1 - np.abs(a - rows)) * np.maximum(0, 1 - np.abs(c - cols))
                        sample = np.einsum("hw,hwc->c", weight, x[b])
                        scale = 1.0 if mask is None else mask[b, p, q, tap]
                        y[b, p, q] += scale * sample @ kernel[i, j]
    return y + bias


def expected_output(spec, p):
    """The variant's output computed independently from the layer's parameters ``p``."""
    kind, arg = parse_conv_variant(spec)
    if kind in ("standard", "grouped", "dilated"):
        groups, dilation = (arg, 1) if kind == "grouped" else (1, arg or 1)
        return torch_conv(X, p["kernel"], p["bias"], STRIDE, PAD, dilation=dilation, groups=groups)
    if kind == "depthwise":  # filter k sees input channel floor(k C / K) only
        c = X.shape[-1]
        return np.concatenate(
            [
                torch_conv(X[..., k * c // FEATURES, None], p["kernel"][..., k, None, None], p["bias"][k, None],
                           STRIDE, PAD)
                for k in range(FEATURES)
            ],
            axis=-1,
        )
    if kind == "separable":  # depthwise (groups = C, filter m d + j on channel m), then 1x1
        dw = np.asarray(p["depthwise_kernel"])
        mid = torch_conv(X, dw.reshape(*dw.shape[:2], 1, -1), None, STRIDE, PAD, groups=X.shape[-1])
        return mid @ np.asarray(p["pointwise_kernel"], np.float64) + p["bias"]
    if kind == "locally_connected":
        return numpy_local(X, np.asarray(p["kernel"], np.float64), np.asarray(p["bias"], np.float64), STRIDE, PAD)
    pred = torch_conv(X, p["offset_conv"]["kernel"], p["offset_conv"]["bias"], STRIDE, PAD)
    taps = 9
    mask = 2.0 / (1 + np.exp(-pred[..., 2 * taps :])) if kind == "deformable_v2" else None  # mask_scale 2 sigmoid
    return numpy_deform(X, pred[..., : 2 * taps], np.asarray(p["kernel"], np.float64), np.asarray(p["bias"]), mask,
                        STRIDE, PAD)


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_each_variant_computes_its_definition_with_the_layers_parameters(spec):
    layer = conv_layer(spec, FEATURES, 3, strides=STRIDE, padding=PAD)
    x = jnp.asarray(X, jnp.float32)
    variables = random_params(layer, x)
    if "offset_conv" in variables["params"]:  # offsets of a pixel or so, so the bilinear sampling matters
        variables["params"]["offset_conv"] = jax.tree.map(lambda a: 0.1 * a, variables["params"]["offset_conv"])
    y = jax.jit(layer.apply)(variables, x)
    p = jax.tree.map(np.asarray, variables["params"])
    want = expected_output(spec, p)
    assert y.shape == want.shape == (2, 3 if spec == "dilated:2" else 4, 3 if spec == "dilated:2" else 4, FEATURES)
    np.testing.assert_allclose(y, want, rtol=2e-4, atol=2e-4)


def test_depthwise_with_a_multiple_of_the_channels_is_the_multiplier_form():
    x = jnp.asarray(X, jnp.float32)
    layer = conv_layer("depthwise", 8, 3)  # 8 = 4 channels x 2 filters each
    variables = random_params(layer, x)
    kernel, bias = variables["params"]["kernel"], variables["params"]["bias"]
    assert kernel.shape == (3, 3, 8)
    want = ops.depthwise_conv(x, kernel.reshape(3, 3, 4, 2), bias, padding="SAME")
    np.testing.assert_allclose(layer.apply(variables, x), want, rtol=1e-5, atol=1e-5)


def test_variant_parameter_counts():
    x = jnp.zeros((1, 8, 8, 4))

    def count(variant, features=8, **kw):
        params = jax.eval_shape(conv_layer(variant, features, 3, **kw).init, jax.random.key(0), x)
        return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))

    A = ops.arithmetic
    assert count("standard") == A.conv_params(4, 8, 3)
    assert count("grouped:4") == A.conv_params(4, 8, 3, groups=4)
    assert count("dilated:3") == A.conv_params(4, 8, 3)
    assert count("depthwise") == A.depthwise_params(4, 3, multiplier=2) == (9 + 1) * 8
    assert count("depthwise", features=6) == (9 + 1) * 6
    assert count("separable") == A.separable_params(4, 8, 3)
    assert count("deformable") == A.conv_params(4, 8, 3) + A.conv_params(4, 2 * 9, 3)
    assert count("deformable_v2") == A.conv_params(4, 8, 3) + A.conv_params(4, 3 * 9, 3)
    assert count("locally_connected") == A.locally_connected_params(4, 8, 3, 8)
    assert count("locally_connected", padding="VALID") == A.locally_connected_params(4, 8, 3, 6)
    assert count("standard", use_bias=False) == 4 * 9 * 8


def test_dtype_and_name():
    x = jnp.ones((1, 6, 6, 4), jnp.float32)
    for variant in ALL_SPECS:
        layer = conv_layer(variant, 4, 3, dtype=jnp.bfloat16, name="c")
        assert layer.name == "c"
        params = jax.eval_shape(layer.init, jax.random.key(0), x)
        assert jax.eval_shape(layer.apply, params, x).dtype == jnp.bfloat16, variant


def test_kernel_init_goes_to_the_variants_with_convs_kernel_layout():
    init = nn.initializers.zeros
    for spec in ("standard", "grouped:2", "dilated:2", "deformable", "deformable_v2"):
        assert conv_variant(spec)(8, 3, kernel_init=init).kernel_init is init, spec
    assert conv_variant("separable")(8, 3, kernel_init=init).depthwise_init is not init
    for spec in ("depthwise", "locally_connected"):
        assert conv_variant(spec)(8, 3, kernel_init=init).kernel_init is not init, spec


def test_parse_and_errors():
    assert parse_conv_variant("grouped:4") == ("grouped", 4)
    assert parse_conv_variant("dilated:3") == ("dilated", 3)
    assert parse_conv_variant("grouped") == ("grouped", 2)
    assert parse_conv_variant("standard") == ("standard", None)
    assert conv_variant("standard") == STANDARD and str(conv_variant("grouped:4")) == "grouped:4"
    assert conv_variant("deformable_v2") == ConvVariant("deformable_v2")
    assert set(CONV_VARIANTS) == {s.split(":")[0] for s in ALL_SPECS}
    for name in CONV_VARIANTS:  # every listed name is itself a valid spec
        parse_conv_variant(name)
    allowed = (
        "allowed: standard, depthwise, separable, grouped:G, dilated:D, deformable, deformable_v2, locally_connected"
    )
    for bad in ["conv", "grouped:0", "grouped:x", "dilated:-1", "standard:2", "", None]:
        with pytest.raises(ValueError, match=f"^conv={bad!r}.*{allowed}"):
            conv_layer(bad, 8, 3)


def test_a_variant_that_does_not_fit_the_channels_fails_at_init_naming_the_layer():
    with pytest.raises(ValueError, match=r"^layer \(Conv groups=4; in_channels=6, features=8\): groups=4 must divide in_channels=6(\n|$)"):
        jax.eval_shape(conv_layer("grouped:4", 8, 3).init, jax.random.key(0), jnp.ones((1, 8, 8, 6)))
    with pytest.raises(ValueError, match=r"^layer \(DepthwiseConv; in_channels=6, features=4\): features=4 must be >= in_channels=6"):
        jax.eval_shape(conv_layer("depthwise", 4, 3).init, jax.random.key(0), jnp.ones((1, 8, 8, 6)))
