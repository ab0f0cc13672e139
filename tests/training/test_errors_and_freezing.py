"""NaN guard, bad configs, checkpoints of another model, and frozen parameters (transfer learning).

The expensive runs are shared: the refusals reuse conftest's ``synthetic_run`` (copied, never changed), the
two transfer tests one pair of runs (a ResNet-20 source, then a frozen-backbone transfer from it).
"""

import shutil

import jax
import numpy as np
import pytest

from cnnjax.training.train import ConfigMismatchError, NonFiniteLossError, train_and_evaluate
from tests.conftest import synthetic_config


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


def _unfinished_copy(synthetic_run, tmp_path):
    """A copy of the shared synthetic run's workdir, as if interrupted (no summary)."""
    config, reference, _ = synthetic_run
    workdir = tmp_path / "w"
    shutil.copytree(reference, workdir)
    (workdir / "summary.json").unlink()
    return config, workdir


def test_changed_state_structure_is_refused_not_deleted(synthetic_run, tmp_path):
    config, workdir = _unfinished_copy(synthetic_run, tmp_path)
    before = sorted(p.name for p in (workdir / "checkpoints" / "latest").iterdir())
    other = config.copy_and_resolve_references()
    other.ema_decay = 0.99
    with pytest.raises(ConfigMismatchError, match="ema_decay: 0.5 in the workdir's run, 0.99 now"):
        train_and_evaluate(other, str(workdir))
    assert sorted(p.name for p in (workdir / "checkpoints" / "latest").iterdir()) == before


def test_checkpoint_of_another_model_is_refused(synthetic_run, tmp_path):
    config, workdir = _unfinished_copy(synthetic_run, tmp_path)
    other = config.copy_and_resolve_references()
    other.model.name = "resnet20"
    with pytest.raises(ConfigMismatchError, match=r"model.name: 'lenet5' in the workdir's run, 'resnet20' now.*another --workdir"):
        train_and_evaluate(other, str(workdir))


@pytest.fixture(scope="module")
def transfer_runs(tmp_path_factory):
    """A ResNet-20 trained on synthetic data, and a transfer net whose frozen backbone is initialised from it."""
    root = tmp_path_factory.mktemp("transfer")
    source = root / "source"
    train_and_evaluate(synthetic_config(**{"model.name": "resnet20", "checkpoint_every_steps": 0}), str(source))
    # an EMA kept but not evaluated (eval_with_ema=False): the test numbers must be the trained weights'
    c = synthetic_config(**{"model.name": "transfer", "frozen": ("backbone",), "init_from": str(source),
                            "checkpoint_every_steps": 0, "ema_decay": 0.5, "eval_with_ema": False})
    c.model.kwargs.backbone = "resnet20"
    target = root / "transfer"
    summary = train_and_evaluate(c, str(target))
    return c, source, target, summary


def test_frozen_backbone_and_its_batchnorm_stay_bitwise_unchanged(transfer_runs):
    """After 8 steps the frozen backbone and its BatchNorm statistics are still the loaded ones, bit for bit,
    while every parameter of the head moved away from its initial value."""
    from cnnjax.models import get_model
    from cnnjax.training.pretrained import load_pretrained, read_pretrained
    from cnnjax.training.train import create_train_state, trainable_mask_for

    c, source, target, summary = transfer_runs
    assert summary["steps"] == 8
    # The initial state is a pure function of the seed and the source: rebuild it, compare with the final checkpoint.
    model = get_model("transfer", num_classes=10, backbone="resnet20")
    initial = create_train_state(c, model, (28, 28, 1), total_steps=8,
                                 trainable_mask=trainable_mask_for(c, model, (28, 28, 1)))
    initial = load_pretrained(initial, str(source))
    final = read_pretrained(str(target))
    same = jax.tree_util.tree_map(np.array_equal, initial.params["backbone"], final["params"]["backbone"])
    assert all(jax.tree_util.tree_leaves(same))
    same_bn = jax.tree_util.tree_map(np.array_equal, initial.batch_stats, final["batch_stats"])
    assert initial.batch_stats and all(jax.tree_util.tree_leaves(same_bn))
    moved = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b), initial.params["head"],
                                   final["params"]["head"])
    assert all(jax.tree_util.tree_leaves(moved))


def test_transfer_from_own_checkpoint_loads_backbone_and_keeps_it_frozen(transfer_runs):
    from cnnjax.training.pretrained import read_pretrained

    _, source, target, _ = transfer_runs
    pretrained = read_pretrained(str(source))
    final = read_pretrained(str(target))
    for name in ("params", "batch_stats"):
        src = {k: v for k, v in pretrained[name].items() if k in final[name]["backbone"]}
        same = jax.tree_util.tree_map(np.array_equal, src, final[name]["backbone"])
        assert set(src) == set(final[name]["backbone"]) and all(jax.tree_util.tree_leaves(same))


def test_without_eval_with_ema_the_trained_weights_are_evaluated(transfer_runs):
    """The transfer run keeps an EMA (decay 0.5) but ``eval_with_ema=False``: its test loss is that of the
    trained weights on the test set, not the EMA's (which differs)."""
    import orbax.checkpoint as ocp

    from cnnjax.data.sources import get_dataset
    from cnnjax.training.steps import cross_entropy
    from cnnjax.training.train import build_model

    c, _, target, summary = transfer_runs
    latest = target / "checkpoints" / "latest"
    final = ocp.StandardCheckpointer().restore(str(latest / max((d.name for d in latest.iterdir() if d.name.isdigit()),
                                                                key=int) / "state"))
    test = get_dataset(c.dataset).test
    batch = test.get_batch(np.arange(len(test)))
    model = build_model(c, 10)

    @jax.jit
    def mean_loss(params):
        logits = model.apply({"params": params, "batch_stats": final["batch_stats"]},
                             batch["image"].astype(np.float32) / 255.0, train=False)
        return cross_entropy(logits, batch["label"]).mean()

    np.testing.assert_allclose(summary["test_loss"], float(mean_loss(final["params"])), rtol=1e-5)
    assert abs(float(mean_loss(final["ema_params"])) - summary["test_loss"]) > 1e-4


def test_init_from_bad_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no checkpoints"):
        train_and_evaluate(synthetic_config(init_from=str(tmp_path)), str(tmp_path / "w"))
