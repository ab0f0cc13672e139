import os

import pytest

import configs
from configs._base import base_config
from experiments.config_resolver import UnknownConfigError, resolve_argv, resolve_config


def test_bare_name_resolves_to_configs_folder():
    assert resolve_config("lenet") == os.path.join(configs.CONFIG_DIR, "lenet.py")


def test_bare_name_keeps_arg():
    assert resolve_config("lenet:runlocal") == os.path.join(configs.CONFIG_DIR, "lenet.py") + ":runlocal"


def test_path_passes_through():
    assert resolve_config("configs/lenet.py:runlocal") == "configs/lenet.py:runlocal"


def test_unknown_name_lists_available():
    with pytest.raises(UnknownConfigError, match=r"no config named 'lenett'; available: .*lenet"):
        resolve_config("lenett")


def test_resolve_argv_both_spellings():
    path = os.path.join(configs.CONFIG_DIR, "lenet.py")
    assert resolve_argv(["run", "--config=lenet", "--config.seed=3"]) == ["run", f"--config={path}", "--config.seed=3"]
    assert resolve_argv(["run", "--config", "lenet"]) == ["run", "--config", path]


def test_lenet_config_has_required_fields():
    from configs import lenet

    c = lenet.get_config()
    for field in ("seed", "num_epochs", "batch_size", "dataset.name", "model.name", "optimizer.name",
                  "optimizer.learning_rate"):
        node = c
        for part in field.split("."):
            node = node[part]
    assert c.optimizer.learning_rate > 0
    base = base_config()  # the lectures' optimizer is every config's default
    assert base.optimizer.name == "adam" and base.optimizer.learning_rate == 1e-3
    with pytest.raises(ValueError, match="config argument 'bogus' is unknown"):
        lenet.get_config("bogus")
