"""Every experiment config loads, has the required fields, and names a model that builds."""

import importlib

import jax
import jax.numpy as jnp
import pytest

import configs
from cnnjax.models import get_model
from cnnjax.training.train import count_params

REQUIRED = ("seed", "num_epochs", "batch_size", "dataset.name", "model.name", "optimizer.name",
            "optimizer.learning_rate")


def _get(config, dotted):
    for part in dotted.split("."):
        config = config[part]
    return config


@pytest.mark.parametrize("name", configs.available())
def test_config_loads_and_model_builds(name):
    module = importlib.import_module(f"configs.{name}")
    config = module.get_config("/data/images" if name == "resnet50_transfer" else None)
    for field in REQUIRED:
        _get(config, field)
    assert config.optimizer.learning_rate > 0
    entry = "sweep" if "sweep" in config else "run"
    assert f"python -m experiments.{entry} --config={name}" in module.__doc__
    kwargs = dict(config.model.kwargs)
    model = get_model(config.model.name, num_classes=10, **kwargs)
    shape = (1, 224, 224, 3) if name == "resnet50_transfer" else (1, 28, 28, 1)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape), train=False))
    n = count_params(variables["params"])
    if name == "lenet":
        assert n == 61_706
    if name == "fashion_small":
        assert n < 100_000


@pytest.mark.parametrize("name", [n for n in configs.available() if n != "resnet50_transfer"])
def test_runlocal_shrinks(name):
    config = importlib.import_module(f"configs.{name}").get_config("runlocal")
    assert config.num_epochs == 1 and config.dataset.train_limit == 2048
