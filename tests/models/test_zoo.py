"""Model zoo: exact parameter counts, shapes, jit + gradients, BatchNorm modes, conv switch, bad input."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.layers import Conv, conv_variant
from cnnjax.models import MODELS, LeNet5, get_model
from cnnjax.models.common import count_params, min_input_size

KEY = jax.random.PRNGKey(0)


def abstract_init(model, shape):
    return jax.eval_shape(lambda: model.init(KEY, jnp.zeros(shape, jnp.float32), train=False))


def random_variables(model, shape, seed=0):
    """Variables of the model's shapes drawn by NumPy: parameters He-scaled normal, BatchNorm statistics at
    their initial 0 (mean) and 1 (var). Compiling the initialisers costs more than the forward and backward
    pass on two cores, and no test here checks them (their parameter counts come from ``abstract_init``)."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        names = [getattr(k, "key", "") for k in path]
        if names[0] == "batch_stats":
            return jnp.full(leaf.shape, 1.0 if names[-1] == "var" else 0.0, leaf.dtype)
        fan_in = max(1, int(np.prod(leaf.shape[:-1])))
        return jnp.asarray(rng.normal(size=leaf.shape) * np.sqrt(2.0 / fan_in), leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract_init(model, shape))


@pytest.mark.parametrize(
    "name, classes, shape, expected",
    [
        ("lenet5", 10, (1, 28, 28, 1), 61_706),
        ("lenet5_classic", 10, (1, 28, 28, 1), 60_000),
        ("resnet18", 1000, (1, 224, 224, 3), 11_689_512),
        ("resnet34", 1000, (1, 224, 224, 3), 21_797_672),
        ("resnet50", 1000, (1, 224, 224, 3), 25_557_032),
        ("resnet101", 1000, (1, 224, 224, 3), 44_549_160),
        ("resnet152", 1000, (1, 224, 224, 3), 60_192_808),
        # He et al. 2016 quote 0.27M / 0.46M / 0.66M / 0.85M / 1.7M.
        ("resnet20", 10, (1, 32, 32, 3), 269_722),
        ("resnet32", 10, (1, 32, 32, 3), 464_154),
        ("resnet44", 10, (1, 32, 32, 3), 658_586),
        ("resnet56", 10, (1, 32, 32, 3), 853_018),
        ("resnet110", 10, (1, 32, 32, 3), 1_727_962),
    ],
)
def test_exact_parameter_counts(name, classes, shape, expected):
    variables = abstract_init(get_model(name, num_classes=classes), shape)
    assert count_params(variables["params"]) == expected


@pytest.mark.parametrize("head, expected", [("gap", 65_834), ("flatten", 96_554)])
def test_small_cnn_counts_stay_under_100k(head, expected):
    # flatten: the classifier sees the whole 7 x 7 x 64 map, 3,136 x 10 + 10 weights instead of 64 x 10 + 10.
    model = get_model("small_cnn", num_classes=10, widths=(32, 64), head=head)
    assert count_params(abstract_init(model, (1, 28, 28, 1))["params"]) == expected


def test_small_cnn_unknown_head_lists_the_heads():
    with pytest.raises(ValueError, match=r"head='avg' is unknown; allowed: gap, flatten"):
        abstract_init(get_model("small_cnn", head="avg"), (1, 28, 28, 1))


def test_cifar_counts_round_to_the_papers_figures():
    quoted = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.7}
    for name, millions in quoted.items():
        n = count_params(abstract_init(get_model(name), (1, 32, 32, 3))["params"])
        assert round(n / 1e6, 2 if millions < 1 else 1) == millions, name


def test_resnet_batch_stats_are_not_params():
    variables = abstract_init(get_model("resnet18", num_classes=1000), (1, 64, 64, 3))
    # 2 statistics per BN channel: stem 64, blocks, downsample BNs.
    assert count_params(variables["batch_stats"]) > 0
    assert "batch_stats" not in jax.tree_util.tree_structure(variables["params"]).__repr__()


def test_lenet5_classic_layer_parameters():
    params = abstract_init(get_model("lenet5_classic"), (1, 32, 32, 1))["params"]
    per_layer = {k: count_params(v) for k, v in params.items()}
    assert per_layer == {"C1": 156, "S2": 12, "C3": 1_516, "S4": 32, "C5": 48_120, "F6": 10_164}


# Small instances of every registered model (fewer / narrower stages where configurable), with an input they accept.
SMALL = {
    "lenet5": ({}, (2, 28, 28, 1)),
    "lenet5_classic": ({}, (2, 28, 28, 1)),
    "resnet18": ({"stem": "cifar", "widths": (4, 8), "stage_sizes": (1, 1), "stem_width": 4}, (2, 12, 12, 1)),
    "resnet50": ({"widths": (2, 4), "stage_sizes": (1, 1), "stem_width": 4}, (2, 16, 16, 3)),
    "resnet20": ({"stage_sizes": (1, 1, 1)}, (2, 8, 8, 3)),
    "inception": ({"stem_width": 8, "blocks": ((4, 2, 4, 2, 4, 4), "M")}, (2, 12, 12, 1)),
    "dilated_cnn": ({"widths": (4, 8)}, (2, 12, 12, 1)),
    "transfer": ({"backbone": "resnet20", "backbone_kwargs": {"stage_sizes": (1, 1, 1)}}, (2, 8, 8, 3)),
    "small_cnn": ({"widths": (4, 8)}, (2, 12, 12, 1)),
}


def make_small(name, **extra):
    kwargs, shape = SMALL[name]
    return get_model(name, num_classes=7, **{**kwargs, **extra}), shape


def loss_fn(model, params, rest, x, labels):
    """Train-mode cross-entropy; aux: (logits, updated batch_stats or {})."""
    variables = {"params": params, **rest}
    rngs = {"dropout": jax.random.PRNGKey(5)}
    if "batch_stats" in rest:
        logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"], rngs=rngs)
        stats = updates["batch_stats"]
    else:
        logits, stats = model.apply(variables, x, train=True, rngs=rngs), {}
    loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))
    return loss, (logits, stats)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_jit_and_gradients(name):
    model, shape = make_small(name)
    x = jax.random.uniform(jax.random.PRNGKey(1), shape)
    labels = jnp.arange(shape[0]) % 7
    variables = random_variables(model, shape)

    @jax.jit  # one compilation: a train-mode gradient and an eval-mode forward
    def run(variables, x, labels):
        params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}
        step = jax.value_and_grad(lambda p: loss_fn(model, p, rest, x, labels), has_aux=True)
        return step(params), model.apply(variables, x, train=False)

    ((loss, (logits, new_stats)), grads), eval_logits = run(variables, x, labels)
    assert logits.shape == (shape[0], 7) and logits.dtype == jnp.float32
    assert eval_logits.shape == (shape[0], 7) and eval_logits.dtype == jnp.float32
    assert np.isfinite(float(loss))
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    # Every parameter tensor gets some gradient (nothing is disconnected).
    assert sum(float(jnp.sum(jnp.abs(g))) > 0 for g in leaves) == len(leaves)
    if "batch_stats" in variables:
        changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], new_stats)
        flags = jax.tree_util.tree_leaves(changed)
        if name == "transfer":  # the frozen backbone's BatchNorm keeps its statistics in train mode
            assert not any(flags)
        else:  # train mode updates every running average
            assert all(flags)


def test_every_registered_model_is_covered():
    covered = set(SMALL) | {"resnet34", "resnet101", "resnet152", "resnet32", "resnet44", "resnet56", "resnet110"}
    # A model added to the registry must be added to SMALL (and so to the jit/gradient/switch tests).
    assert set(MODELS) == covered


# ------------------------------------------------------------------------------------------- BatchNorm


def test_batchnorm_train_vs_eval():
    model, shape = make_small("resnet20")
    x = jax.random.normal(jax.random.PRNGKey(2), (4, *shape[1:])) * 3 + 1
    variables = random_variables(model, x.shape)

    @jax.jit
    def run(variables, x):
        y_train, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        y_train_single, _ = model.apply(variables, x[:1], train=True, mutable=["batch_stats"])
        y_eval = model.apply(variables, x, train=False)
        y_eval_single = model.apply(variables, x[:1], train=False)
        return y_train, updates, y_train_single, y_eval, y_eval_single

    y_train, updates, y_train_single, y_eval, y_eval_single = run(variables, x)
    # Train mode: an example's output depends on the rest of the batch; eval mode: it does not.
    assert not np.allclose(y_train[:1], y_train_single, atol=1e-4)
    np.testing.assert_allclose(y_eval_single, y_eval[:1], rtol=1e-5, atol=1e-5)
    # Running mean after one step, PyTorch convention (momentum 0.1 there = 0.9 here): 0.9 * 0 + 0.1 * batch mean.
    conv_out = np.asarray(
        jax.lax.conv_general_dilated(
            x, variables["params"]["conv1"]["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    )
    np.testing.assert_allclose(
        updates["batch_stats"]["bn1"]["mean"], 0.1 * conv_out.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        updates["batch_stats"]["bn1"]["var"], 0.9 + 0.1 * conv_out.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-4
    )
    # Train mode without mutable=['batch_stats'] fails loudly instead of silently dropping the update.
    with pytest.raises(Exception, match="batch_stats"):
        jax.eval_shape(lambda v: model.apply(v, x, train=True), variables)


# ------------------------------------------------------------------------------------------- conv switch

VARIANTS = [
    "standard",
    "depthwise",
    "separable",
    "grouped:2",
    "dilated:2",
    "deformable",
    "deformable_v2",
    "locally_connected",
]


def param_shapes(variables):
    return jax.tree_util.tree_map(lambda a: tuple(a.shape), variables["params"])


def switch_cases():
    """Every (model, variant) pair; the default suite runs a rotation covering every model and variant."""
    names, variants = sorted(SMALL), VARIANTS[1:]
    cases = []
    for i, name in enumerate(names):
        for j, variant in enumerate(variants):
            fast = j in (i % len(variants), (i + 3) % len(variants))
            cases.append(pytest.param(name, variant, marks=() if fast else pytest.mark.slow))
    return cases


@pytest.mark.parametrize("name, variant", switch_cases())
def test_conv_switch_changes_every_model(name, variant):
    if name == "dilated_cnn" and variant == "dilated:2":
        variant = "dilated:3"  # the seed net is dilated:2 already
    if name == "lenet5_classic" and variant.startswith("dilated"):
        pytest.skip("lenet5_classic rejects dilation (tested below)")
    extra = {"connection_table": None} if name == "lenet5_classic" else {}
    switch = {"conv": variant}
    if name == "dilated_cnn" and variant.startswith("grouped"):
        extra = {"conv_stem": False}  # conv1 sees the 1-channel image
    model, shape = make_small(name, **extra, **switch)
    base, _ = make_small(name, **extra)
    variables = abstract_init(model, shape)
    out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros(shape), train=False), variables)
    assert out.shape == (shape[0], 7)
    if variant.startswith("dilated"):
        d = int(variant.split(":")[1])
        jaxpr = str(jax.make_jaxpr(lambda v: model.apply(v, jnp.zeros(shape), train=False))(variables))
        assert f"rhs_dilation=({d}, {d})" in jaxpr
    else:
        assert param_shapes(variables) != param_shapes(abstract_init(base, shape))


# LeNet-5 (28x28x1, 10 classes) with conv2 (6 -> 16 maps, 5x5 VALID on 14x14) switched: 61,706 - 2,416 + conv2's
# own parameters; a dilated conv2 also shrinks the map fc1 sees (6x6 -> 3x3 after pooling instead of 5x5).
STANDARD_CONV2 = (6 * 25 + 1) * 16  # 2,416
LENET5_CONV2 = {
    "standard": STANDARD_CONV2,
    "depthwise": (25 + 1) * 16,  # 16 one-channel 5x5 filters
    "separable": 25 * 6 + (6 + 1) * 16,  # depthwise 5x5 x 6, then 1x1 6 -> 16 with bias
    "grouped:2": (3 * 25 + 1) * 16,
    "dilated:2": STANDARD_CONV2,
    "deformable": STANDARD_CONV2 + (6 * 25 + 1) * 2 * 25,  # + offset conv: (dy, dx) per tap
    "deformable_v2": STANDARD_CONV2 + (6 * 25 + 1) * 3 * 25,  # + offset conv: (dy, dx, mask) per tap
    "locally_connected": 10 * 10 * (6 * 25 + 1) * 16,  # a kernel and bias per output cell
}


def test_lenet5_conv2_variants_have_exact_parameter_counts():
    totals = {}
    for variant, conv2 in LENET5_CONV2.items():
        params = abstract_init(get_model("lenet5", conv=variant), (1, 28, 28, 1))["params"]
        fc1 = (16 * (3 * 3 if variant.startswith("dilated") else 5 * 5) + 1) * 120
        assert count_params(params["conv2"]) == conv2, variant
        assert count_params(params["fc1"]) == fc1, variant
        totals[variant] = count_params(params)
        assert totals[variant] == 61_706 - STANDARD_CONV2 - 48_120 + conv2 + fc1, variant
    assert totals == {
        "standard": 61_706,
        "depthwise": 59_706,
        "separable": 59_552,
        "grouped:2": 60_506,
        "dilated:2": 30_986,
        "deformable": 69_256,
        "deformable_v2": 73_031,
        "locally_connected": 300_890,
    }


@pytest.mark.parametrize(
    "variant", [v if v in ("depthwise", "deformable") else pytest.param(v, marks=pytest.mark.slow) for v in VARIANTS]
)
def test_conv_switch_runs_with_gradients_on_lenet5(variant):
    model = get_model("lenet5", conv=variant)
    x = jax.random.uniform(jax.random.PRNGKey(3), (2, 28, 28, 1))
    params = random_variables(model, x.shape)["params"]
    grads = jax.jit(jax.grad(lambda p: jnp.sum(model.apply({"params": p}, x) ** 2)))(params)
    assert count_params(grads["conv2"]) == LENET5_CONV2[variant]
    conv2_grads = jax.tree_util.tree_leaves(grads["conv2"])
    assert all(np.all(np.isfinite(g)) for g in conv2_grads)
    # Every conv2 array learns (a deformable layer's offset conv included).
    assert all(float(jnp.sum(jnp.abs(g))) > 0 for g in conv2_grads)


def test_conv_switch_replaces_the_resnet_3x3_convs_only():
    model = get_model("resnet20", conv="grouped:4")
    params = abstract_init(model, (1, 16, 16, 3))["params"]
    assert params["conv1"]["kernel"].shape == (3, 3, 3, 16)  # stem stays standard
    assert params["layer1_0"]["conv1"]["kernel"].shape == (3, 3, 4, 16)  # 16 / 4 input channels per group
    bottleneck = get_model("resnet50", conv="grouped:4", stage_sizes=(1, 1, 1, 1))
    p = abstract_init(bottleneck, (1, 32, 32, 3))["params"]["layer1_0"]
    assert p["conv1"]["kernel"].shape == (1, 1, 64, 64) and p["conv2"]["kernel"].shape == (3, 3, 16, 64)


def test_conv_stem_switches_the_stem_too():
    p = abstract_init(get_model("resnet20", conv="dilated:2", conv_stem=True), (1, 16, 16, 3))["params"]
    assert p["conv1"]["kernel"].shape == (3, 3, 3, 16)
    p = abstract_init(get_model("lenet5", conv="separable", conv_stem=True), (1, 28, 28, 1))["params"]
    assert "kernel" not in p["conv1"]


# ------------------------------------------------------------------------------------------- bad input


def test_unknown_model_lists_the_registry():
    with pytest.raises(ValueError, match="resnet18") as err:
        get_model("resnet19")
    assert "'resnet19' is unknown" in str(err.value) and "lenet5_classic" in str(err.value)


def test_unknown_keyword_is_a_clear_type_error():
    with pytest.raises(TypeError, match="lenet5"):
        get_model("lenet5", depth=3)


@pytest.mark.parametrize("variant", ["fancy", "grouped:0", "dilated:x", "separable:2", None])
def test_unknown_or_malformed_variant_fails_in_get_model(variant):
    with pytest.raises(ValueError, match=f"^conv={variant!r}.*allowed: standard, depthwise, separable, grouped:G"):
        get_model("lenet5", conv=variant)


def test_get_model_resolves_the_spec_once_and_takes_a_module_factory():
    assert get_model("lenet5", conv="grouped:2").conv == conv_variant("grouped:2")
    direct = abstract_init(get_model("lenet5", conv=functools.partial(Conv, groups=2)), (1, 28, 28, 1))
    assert param_shapes(direct) == param_shapes(abstract_init(get_model("lenet5", conv="grouped:2"), (1, 28, 28, 1)))
    with pytest.raises(TypeError, match=r"lenet5: conv='grouped:2' must be a module factory, not a spec"):
        abstract_init(LeNet5(conv="grouped:2"), (1, 28, 28, 1))
    with pytest.raises(ValueError, match="backbone_kwargs must not set 'conv'"):
        abstract_init(get_model("transfer", backbone="resnet20", backbone_kwargs={"conv": "grouped:2"}), (1, 8, 8, 3))


@pytest.mark.parametrize("num_classes", [0, -3, 2.5, True, "10"])
def test_num_classes_must_be_a_positive_int(num_classes):
    with pytest.raises(ValueError) as err:
        get_model("lenet5", num_classes=num_classes)
    assert str(err.value) == f"num_classes={num_classes!r} must be a positive int (the number of output classes)"


def test_a_variant_that_does_not_fit_fails_at_init_with_one_message():
    with pytest.raises(ValueError) as err:
        abstract_init(get_model("lenet5", conv="grouped:4"), (1, 28, 28, 1))
    assert str(err.value).splitlines()[0] == (
        "layer 'conv2' (Conv groups=4; in_channels=6, features=16): groups=4 must divide in_channels=6"
    )


@pytest.mark.parametrize(
    "name, kwargs, shape, message",
    [
        ("lenet5", {"conv": "grouped:2", "conv_stem": True}, (1, 28, 28, 1),
         r"layer 'conv1' \(Conv groups=2; in_channels=1, features=6\): groups=2 must divide in_channels=1(\n|$)"),
        ("resnet20", {"conv": "grouped:3"}, (1, 16, 16, 3),
         r"layer 'layer1_0/conv1' \(Conv groups=3; in_channels=16, features=16\): groups=3 must divide in_channels=16(\n|$)"),
        ("transfer", {"backbone": "resnet20", "conv": "grouped:3"}, (1, 16, 16, 3),
         r"layer 'backbone/layer1_0/conv1' \(Conv groups=3; in_channels=16, features=16\): groups=3 must divide"),
        ("dilated_cnn", {"conv": "grouped:2"}, (1, 28, 28, 1),
         r"layer 'conv1' \(Conv groups=2; in_channels=1, features=32\): groups=2 must divide in_channels=1(\n|$)"),
        ("lenet5_classic", {"conv": "dilated:2"}, (1, 28, 28, 1),
         r"layer 'C5' \(Conv dilation=2; in_channels=16, features=120\): kernel of size 5 \(dilation 2, extent 9\) .* larger than the padded input 5"),
        ("inception", {"conv": "grouped:16"}, (1, 28, 28, 1),
         r"layer 'inception0/branch3x3' \(Conv groups=16; in_channels=24, features=32\): groups=16 must divide in_channels=24(\n|$)"),
        ("small_cnn", {"conv": "depthwise", "widths": (8, 4)}, (1, 28, 28, 1),
         r"layer 'conv1_0' \(DepthwiseConv; in_channels=8, features=4\): features=4 must be >= in_channels=8"),
    ],
)
def test_conv_variant_a_model_cannot_use(name, kwargs, shape, message):
    with pytest.raises(ValueError, match="^" + message):
        abstract_init(get_model(name, **kwargs), shape)


def test_input_too_small_names_the_minimum():
    model = get_model("lenet5")
    abstract_init(model, (1, 12, 12, 1))  # the minimum works
    with pytest.raises(ValueError, match="too small.*minimum input size is 12x12"):
        abstract_init(model, (1, 11, 11, 1))
    # A dilated conv2 needs 20x20; below that the layer that no longer fits says so.
    with pytest.raises(ValueError, match=r"^layer 'pool2' \(MaxPool\): window 2 .* larger than the padded input 1"):
        abstract_init(get_model("lenet5", conv="dilated:2"), (1, 19, 19, 1))
    abstract_init(get_model("lenet5", conv="dilated:2"), (1, 20, 20, 1))


def test_lenet5_classic_rejects_inputs_over_32():
    with pytest.raises(ValueError, match="at most 32x32"):
        abstract_init(get_model("lenet5_classic"), (1, 33, 33, 1))


def test_wrong_rank_input():
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        abstract_init(get_model("resnet20"), (28, 28, 1))


def test_min_input_size_helper():
    # two 3x3 VALID convs then a 2x2 pool: 1 <- 2 <- 4 <- 6.
    assert min_input_size([(3, 1, "VALID", 1), (3, 1, "VALID", 1), (2, 2, "VALID", 1)]) == 6
    assert min_input_size([(3, 2, "SAME", 1)]) == 1
    assert min_input_size([(3, 1, "VALID", 2)]) == 5


# ------------------------------------------------------------------------------------------- specific models


def test_lenet5_classic_returns_negative_squared_distances_to_fixed_codes():
    from cnnjax.models.lenet import rbf_codes

    model = get_model("lenet5_classic")
    x = jax.random.uniform(KEY, (3, 28, 28, 1))
    variables = random_variables(model, x.shape)
    logits, inter = jax.jit(lambda v, x: model.apply(v, x, capture_intermediates=True))(variables, x)
    f6 = 1.7159 * jnp.tanh(2 / 3 * inter["intermediates"]["F6"]["__call__"][0])
    codes = rbf_codes(10)
    assert set(np.unique(codes)) == {-1.0, 1.0} and codes.shape == (10, 84)
    expected = -np.sum((np.asarray(f6)[:, None, :] - codes[None]) ** 2, axis=-1)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-4)
    assert np.all(np.asarray(logits) <= 0)


def test_lenet5_classic_pads_28_to_32_and_accepts_32():
    model = get_model("lenet5_classic")
    img = jax.random.uniform(KEY, (1, 28, 28, 1))
    padded = jnp.pad(img, ((0, 0), (2, 2), (2, 2), (0, 0)))

    variables = random_variables(model, padded.shape)
    a, b = jax.jit(lambda v, img, padded: (model.apply(v, img), model.apply(v, padded)))(variables, img, padded)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_dilated_cnn_layer_shapes():
    model = get_model("dilated_cnn")
    params = abstract_init(model, (1, 28, 28, 1))["params"]
    # 28 -> conv (dilation 2, padding 2) 28 -> pool 3/2 pad 1: 14 -> conv 14 -> pool 7: 7 * 7 * 64 = 3136.
    assert params["output"]["kernel"].shape == (3136, 10)
    assert params["conv1"]["kernel"].shape == (3, 3, 1, 32) and params["conv2"]["kernel"].shape == (3, 3, 32, 64)


def test_inception_module_concatenates_branches():
    from cnnjax.models import InceptionModule

    module = InceptionModule(8, 4, 12, 2, 6, 5)
    x = jnp.ones((2, 9, 9, 3))
    variables = abstract_init(module, x.shape)
    y = jax.eval_shape(module.apply, variables, x)
    assert y.shape == (2, 9, 9, 8 + 12 + 6 + 5)
    p = variables["params"]
    assert p["branch5x5"]["kernel"].shape == (5, 5, 2, 6) and p["branch3x3"]["kernel"].shape == (3, 3, 4, 12)
    assert p["branch_pool_proj"]["kernel"].shape == (1, 1, 3, 5)


def test_resnet_include_top_false_and_transfer_head():
    backbone = get_model("resnet50", include_top=False)
    out = jax.eval_shape(lambda: backbone.init_with_output(KEY, jnp.zeros((1, 224, 224, 3)))[0])
    assert out.shape == (1, 7, 7, 2048)
    transfer = get_model("transfer", num_classes=5, backbone="resnet50")
    params = abstract_init(transfer, (1, 64, 64, 3))["params"]
    assert set(params) == {"backbone", "head"}
    assert params["head"]["kernel"].shape == (2048, 5)
    assert count_params(params["backbone"]) == 25_557_032 - (2048 * 1000 + 1000)


def test_cifar_option_a_shortcut_is_parameter_free_zero_padding():
    from cnnjax.models import ResidualBlock

    block = ResidualBlock(8, strides=2, shortcut="identity", zero_init_residual=True)
    x = jax.random.uniform(KEY, (1, 6, 6, 4))
    variables, y = jax.jit(lambda x: block.init_with_output(KEY, x)[::-1])(x)
    assert "downsample_conv" not in variables["params"]
    # With the last BN scale at 0 the block is relu(shortcut(x)): subsampled, channels padded 2 + 4 + 2.
    expected = jnp.pad(x[:, ::2, ::2, :], ((0, 0), (0, 0), (0, 0), (2, 2)))
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_bfloat16_compute_returns_float32_logits(name):
    model, shape = make_small(name, dtype=jnp.bfloat16)
    variables = abstract_init(model, shape)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(variables["params"]))
    jaxpr = jax.make_jaxpr(lambda v: model.apply(v, jnp.zeros(shape), train=False))(variables)
    assert "bf16" in str(jaxpr)  # the computation really runs in bfloat16
    out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros(shape), train=False), variables)
    assert out.dtype == jnp.float32


def test_lenet5_dropout_adds_no_parameters_and_acts_only_in_training():
    x = jax.random.normal(jax.random.key(0), (4, 28, 28, 1))
    model = get_model("lenet5", dropout=0.5)
    variables = random_variables(model, x.shape)
    assert count_params(variables["params"]) == 61_706

    @jax.jit
    def run(variables, x):
        plain = get_model("lenet5").apply(variables, x)
        dropped = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
        return plain, model.apply(variables, x), dropped

    plain, evaluated, dropped = run(variables, x)
    np.testing.assert_array_equal(evaluated, plain)  # eval: the plain network
    assert not np.allclose(dropped, plain)
    with pytest.raises(ValueError, match=r"lenet5: dropout=1.0 must be in \[0, 1\)"):
        abstract_init(get_model("lenet5", dropout=1.0), x.shape)


def test_pool_switch_on_lenet5_is_2x2_average_pooling():
    model = get_model("lenet5", pool="avg")
    x = jax.random.uniform(KEY, (2, 28, 28, 1))
    variables = random_variables(model, x.shape)
    assert count_params(variables["params"]) == 61_706  # pooling has no parameters

    @jax.jit
    def run(variables, x):
        _, inter = model.apply(variables, x, capture_intermediates=True)
        return inter["intermediates"]["conv1"]["__call__"][0], inter["intermediates"]["pool1"]["__call__"][0]

    conv1, pool1 = (np.asarray(a) for a in run(variables, x))
    relu = np.maximum(conv1, 0)  # (2, 28, 28, 6): the mean of each 2x2 block
    np.testing.assert_allclose(pool1, relu.reshape(2, 14, 2, 14, 2, 6).mean(axis=(2, 4)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"^pool='min' is unknown; allowed: max, avg$"):
        get_model("lenet5", pool="min")
    with pytest.raises(TypeError, match=r"small_cnn: pool='avg' must be a module factory, not a spec"):
        abstract_init(MODELS["small_cnn"](pool="avg"), (1, 28, 28, 1))
