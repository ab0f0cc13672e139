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
    with pytest.raises(ValueError, match=r"config argument\(s\) 'bogus' unknown for lenet; allowed: runlocal"):
        lenet.get_config("bogus")


def test_missing_config_file_is_named():
    with pytest.raises(UnknownConfigError, match=r"no config file 'configs/nope\.py'"):
        resolve_config("configs/nope.py:runlocal")


def test_unknown_override_names_the_closest_fields():
    from experiments.config_resolver import unknown_override

    path = resolve_config("lenet")
    assert unknown_override(["run", f"--config={path}", "--config.optimizer.learning_rate=1e-3"]) is None
    assert unknown_override(["run", f"--config={path}", "--config.optimizer.learnin_rate=1"]) == (
        "--config.optimizer.learnin_rate: optimizer has no field 'learnin_rate'; did you mean learning_rate?")
    assert unknown_override(["run", "--config", path, "--config.dataset.validation_splt=0.1"]).startswith(
        "--config.dataset.validation_splt: dataset has no field 'validation_splt'; did you mean validation_split")
    assert unknown_override(["run", f"--config={path}", "--config.zzz=1"]).startswith(
        "--config.zzz: the config has no field 'zzz'; the config has: augment, batch_size, checkpoint_every_steps")
    assert unknown_override(["run", f"--config={path}", "--config.seed.x=1"]) == (
        "--config.seed.x: seed is a value (0), not a group of fields")


def test_folder_options_are_in_every_config():
    """The image-folder options live in the base config, so any experiment can use a folder data set."""
    from configs import fashion_small, lenet, resnet20

    for module in (lenet, fashion_small, resnet20):
        c = module.get_config()
        for field in ("target_size", "color_mode", "interpolation", "validation_split", "test_dir", "skip_corrupt",
                      "check_images"):
            assert field in c.dataset, (module.__name__, field)
        assert c.model.kwargs.conv == "standard"
