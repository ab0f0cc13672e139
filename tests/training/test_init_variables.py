"""``init_variables``: the initialisation program, compiled on CPU with ``INIT_COMPILER_OPTIONS`` (cheaper to
compile), gives the same bits as with XLA's default options. (What it saves is compile time, a benchmark:
``python -m benchmarks.first_step``.)"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.models import MODELS, get_model
from cnnjax.training.train import init_variables

_IMAGE_SHAPES = {"lenet5": (28, 28, 1), "lenet5_classic": (32, 32, 1)}


def _default_compiled_init(model, rngs, image_shape):
    return jax.jit(functools.partial(model.init, train=False))(rngs, jnp.zeros((1, *image_shape), jnp.float32))


def _assert_same_bits(name, seed):
    model = get_model(name, num_classes=10)
    image_shape = _IMAGE_SHAPES.get(name, (32, 32, 3))
    rngs = {"params": jax.random.PRNGKey(seed), "dropout": jax.random.PRNGKey(seed + 1)}
    got = init_variables(model, rngs, image_shape)
    want = _default_compiled_init(model, rngs, image_shape)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for path, a, b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(got), jax.tree.leaves(want)):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b)), (name, seed, path[0])


@pytest.mark.parametrize("name,seed", [("lenet5", 0), ("resnet20", 3)])
def test_init_variables_has_the_same_bits_as_the_default_compilation(name, seed):
    _assert_same_bits(name, seed)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(MODELS) - {"lenet5", "resnet20"}))
def test_every_model_of_the_zoo_initialises_to_the_same_bits(name):
    _assert_same_bits(name, 0)
