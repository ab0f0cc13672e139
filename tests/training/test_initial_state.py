"""``create_train_state`` builds the keys, the variables and the optimizer state in one program compiled on CPU
with ``INIT_COMPILER_OPTIONS`` (cheaper to compile); it must give the same bits as the plain formulation: the
keys split eagerly, ``model.init`` jitted with XLA's default options, ``tx.init`` eagerly. (What it saves is
compile time, a benchmark: ``python -m benchmarks.first_step``.)"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cnnjax.models import MODELS, get_model
from cnnjax.training.optimizers import make_optimizer
from cnnjax.training.train import create_train_state

_IMAGE_SHAPES = {"lenet5": (28, 28, 1), "lenet5_classic": (32, 32, 1)}


def _config(seed, **optimizer):
    c = ml_collections.ConfigDict({"seed": seed, "optimizer": {"name": "adam", "learning_rate": 1e-3,
                                                                "schedule": "constant", "weight_decay": 0.0}})
    c.optimizer.update(optimizer)
    return c


def _plain_initial_tree(config, model, image_shape, total_steps):
    init_rng, dropout_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    variables = jax.jit(functools.partial(model.init, train=False))(
        {"params": init_rng, "dropout": dropout_rng}, jnp.zeros((1, *image_shape), jnp.float32))
    tx = make_optimizer(config.optimizer, total_steps)
    return {"step": jnp.asarray(0, jnp.int32), "params": variables["params"],
            "batch_stats": variables.get("batch_stats", {}), "opt_state": tx.init(variables["params"]),
            "rng": state_rng}


def _assert_same_bits(name, config):
    model = get_model(name, num_classes=10)
    image_shape = _IMAGE_SHAPES.get(name, (32, 32, 3))
    got = create_train_state(config, model, image_shape, total_steps=100).checkpoint_tree()
    want = _plain_initial_tree(config, model, image_shape, total_steps=100)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and np.array_equal(a, b), (name, jax.tree_util.keystr(path))


@pytest.mark.parametrize("name,config", [("lenet5", _config(0)),
                                         ("resnet20", _config(3, name="sgd", momentum=0.9, schedule="cosine"))],
                         ids=["lenet5-adam", "resnet20-sgd-momentum"])
def test_initial_state_has_the_bits_of_the_plain_formulation(name, config):
    _assert_same_bits(name, config)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(MODELS) - {"lenet5", "resnet20"}))
def test_every_model_of_the_zoo_starts_from_the_same_bits(name):
    _assert_same_bits(name, _config(0))
