"""Every experiment config loads, has the required fields, and names a model that builds."""

import importlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import configs
from cnnjax.data.augment import AUGMENT_FIELDS
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


@pytest.mark.parametrize("name", configs.available())
def test_runlocal_shrinks(name):
    arg = "/data/images,runlocal" if name == "resnet50_transfer" else "runlocal"
    config = importlib.import_module(f"configs.{name}").get_config(arg)
    assert config.num_epochs == 1 and config.dataset.train_limit == 2048


def test_configs_import_no_jax():
    """Configs are pure data: loading every one of them imports neither cnnjax nor JAX."""
    code = ("import importlib, sys, configs\n"
            "for name in configs.available(): importlib.import_module('configs.' + name).get_config()\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'cnnjax', 'dm_pix'))\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=configs.CONFIG_DIR + "/..")


@pytest.mark.parametrize("name", [n for n in configs.available() if n != "resnet50_transfer"])
def test_unknown_config_arguments_listed_once(name):
    module = importlib.import_module(f"configs.{name}")
    with pytest.raises(ValueError, match=rf"^config argument\(s\) 'bogus', 'x' unknown for {name}; allowed: runlocal$"):
        module.get_config("runlocal,bogus,x=1")


def test_parse_arg_types_and_positional():
    from configs._base import parse_arg
    args = parse_arg("/data/cats,runlocal,size=3", "demo", positional="folder", folder="", runlocal=False, size=1)
    assert (args.folder, args.runlocal, args.size) == ("/data/cats", True, 3)
    assert parse_arg(None, "demo", runlocal=False).runlocal is False
    with pytest.raises(ValueError, match=r"^config argument size='big' must be of type int$"):
        parse_arg("size=big", "demo", size=1)
    assert importlib.import_module("configs.resnet50_transfer").get_config("/data/cats").dataset.name == "folder:/data/cats"


def test_augment_fields_agree_with_the_base_config():
    """The field names the augmentation reads are exactly those configs/_base.py gives defaults for."""
    from configs._base import augment_config, base_config
    assert set(augment_config()) == set(AUGMENT_FIELDS)
    assert set(base_config().augment) == set(AUGMENT_FIELDS)
