"""NaN guard, bad configs, checkpoints of another model, and frozen parameters (transfer learning)."""

import jax
import numpy as np
import pytest

from cnnjax.training.metrics import read_metrics
from cnnjax.training.train import ConfigMismatchError, NonFiniteLossError, train_and_evaluate
from configs._base import base_config


def synthetic_config(**overrides):
    c = base_config()
    c.dataset.name = "synthetic"
    c.num_epochs, c.batch_size, c.eval_batch_size = 1, 64, 64
    c.progress_bar = c.tensorboard = False
    c.checkpoint_every_steps = 2
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def test_nan_loss_stops_with_the_step_and_keeps_last_good_checkpoint(tmp_path):
    # SGD with an absurd learning rate blows the weights up within a few steps.
    c = synthetic_config(**{"optimizer.name": "sgd", "optimizer.learning_rate": 1e12, "optimizer.momentum": 0.0})
    with pytest.raises(NonFiniteLossError, match=r"NaN or Inf at step (\d+); stopping") as info:
        train_and_evaluate(c, str(tmp_path))
    bad_step = int(info.value.args[0].split("at step ")[1].split(";")[0])
    assert bad_step >= 1
    kept = sorted(int(d) for d in (tmp_path / "checkpoints" / "latest").iterdir() if d.name.isdigit())
    assert all(step < bad_step for step in kept)


def test_batch_larger_than_dataset(tmp_path):
    with pytest.raises(ValueError, match=r"batch_size=1024 is larger than the 512 training examples"):
        train_and_evaluate(synthetic_config(batch_size=1024), str(tmp_path))


@pytest.mark.parametrize("field, value, message", [
    ("optimizer.name", "rmsprop", r"optimizer.name='rmsprop' is unknown; available: adam, adamw, sgd"),
    ("optimizer.schedule", "linear", r"optimizer.schedule='linear' is unknown; available: constant"),
    ("optimizer.learning_rate", 0.0, r"optimizer.learning_rate=0.0 must be a number > 0"),
    ("num_epochs", 0, r"num_epochs=0 must be an int >= 1"),
    ("mixed_precision", "fp8", r"mixed_precision='fp8' is unknown"),
    ("frozen", ("trunk",), r"frozen=\('trunk',\): \['trunk'\] are not parameter subtrees of lenet5"),
])
def test_bad_config_values(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        train_and_evaluate(synthetic_config(**{field: value}), str(tmp_path))


def test_changed_state_structure_is_refused_not_deleted(tmp_path):
    train_and_evaluate(synthetic_config(), str(tmp_path))
    before = sorted(p.name for p in (tmp_path / "checkpoints" / "latest").iterdir())
    with pytest.raises(ConfigMismatchError, match="ema_decay: 0.0 in the workdir's run, 0.99 now"):
        train_and_evaluate(synthetic_config(ema_decay=0.99), str(tmp_path))
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "latest").iterdir()) == before


def test_checkpoint_of_another_model_is_refused(tmp_path):
    train_and_evaluate(synthetic_config(), str(tmp_path))
    c = synthetic_config(**{"model.name": "resnet20"})
    with pytest.raises(ConfigMismatchError, match=r"model.name: 'lenet5' in the workdir's run, 'resnet20' now.*another --workdir"):
        train_and_evaluate(c, str(tmp_path))


def test_frozen_backbone_and_its_batchnorm_stay_bitwise_unchanged(tmp_path):
    from cnnjax.models import get_model
    from cnnjax.training.checkpoint import Checkpoints, abstract_tree
    from cnnjax.training.train import checkpoint_identity, create_train_state, trainable_mask_for

    c = synthetic_config(**{"model.name": "transfer", "frozen": ("backbone",), "checkpoint_every_steps": 0})
    c.model.kwargs.backbone = "resnet20"
    summary = train_and_evaluate(c, str(tmp_path))
    assert summary["steps"] == 8
    # The initial state is a pure function of the seed: rebuild it and compare with the final checkpoint.
    model = get_model("transfer", num_classes=10, backbone="resnet20")
    initial = create_train_state(c, model, (28, 28, 1), total_steps=8,
                                 trainable_mask=trainable_mask_for(c, model, (28, 28, 1)))
    checkpoints = Checkpoints(str(tmp_path))
    final_tree, _ = checkpoints.restore_latest(abstract_tree(initial.checkpoint_tree()),
                                               checkpoint_identity(c, initial, (28, 28, 1), 10))
    checkpoints.close()
    same = jax.tree_util.tree_map(np.array_equal, initial.params["backbone"], final_tree["params"]["backbone"])
    assert all(jax.tree_util.tree_leaves(same))
    same_bn = jax.tree_util.tree_map(np.array_equal, initial.batch_stats, final_tree["batch_stats"])
    assert initial.batch_stats and all(jax.tree_util.tree_leaves(same_bn))
    moved = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b), initial.params["head"],
                                   final_tree["params"]["head"])
    assert all(jax.tree_util.tree_leaves(moved))


def test_transfer_from_own_checkpoint_loads_backbone_and_keeps_it_frozen(tmp_path):
    from cnnjax.training.pretrained import read_pretrained

    source = tmp_path / "source"
    train_and_evaluate(synthetic_config(**{"model.name": "resnet20", "checkpoint_every_steps": 0}), str(source))
    pretrained = read_pretrained(str(source))
    c = synthetic_config(**{"model.name": "transfer", "frozen": ("backbone",), "init_from": str(source),
                            "checkpoint_every_steps": 0})
    c.model.kwargs.backbone = "resnet20"
    target = tmp_path / "transfer"
    train_and_evaluate(c, str(target))
    final = read_pretrained(str(target))
    for name in ("params", "batch_stats"):
        src = {k: v for k, v in pretrained[name].items() if k in final[name]["backbone"]}
        same = jax.tree_util.tree_map(np.array_equal, src, final[name]["backbone"])
        assert set(src) == set(final[name]["backbone"]) and all(jax.tree_util.tree_leaves(same))


def test_init_from_bad_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no checkpoints"):
        train_and_evaluate(synthetic_config(init_from=str(tmp_path)), str(tmp_path / "w"))


def test_ema_and_dropout_train_end_to_end(tmp_path):
    # The EMA starts as a copy of the weights (not the same buffers, which the donating step would reject).
    overrides = {"ema_decay": 0.9, "model.kwargs": {"dropout": 0.3}}
    with_ema = train_and_evaluate(synthetic_config(eval_with_ema=True, **overrides), str(tmp_path / "ema"))
    plain = train_and_evaluate(synthetic_config(eval_with_ema=False, **overrides), str(tmp_path / "plain"))
    assert np.isfinite(with_ema["test_loss"]) and np.isfinite(plain["test_loss"])
    train = [[r for r in read_metrics(str(tmp_path / d)) if r["split"] == "train"] for d in ("ema", "plain")]
    assert train[0] and [r["loss"] for r in train[0]] == [r["loss"] for r in train[1]]  # the same training ...
    assert with_ema["test_loss"] != plain["test_loss"]  # ... evaluated with other weights
