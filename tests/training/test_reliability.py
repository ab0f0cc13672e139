"""Fault injection, in process on the synthetic set: a workdir's run is its config (another config is refused
before anything is written, the same config on a finished run changes no file), every bad value is refused
before any training, a damaged checkpoint is never loaded, and SIGINT stops with a checkpoint from which the
rerun ends bitwise equal to an uninterrupted run. The CLI-level faults (SIGTERM, a second process) are in
test_reliability_cli.py."""

import dataclasses
import json
import os
import shutil
import signal

import jax
import numpy as np
import pytest

from cnnjax.training import train as train_lib
from cnnjax.training.checkpoint import Checkpoints, UnreadableCheckpointWarning, abstract_tree
from cnnjax.training.run_identity import (
    RESULT_NEUTRAL_FIELDS,
    ConfigMismatchError,
    config_differences,
    finished_summary,
)
from cnnjax.training.train import TrainingInterrupted, train_and_evaluate
from tests.training.run_helpers import assert_same_run, checkpoint_steps, tiny_config, tree_digest


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finished")
    summary = train_and_evaluate(tiny_config(), str(workdir))
    return workdir, summary


def test_rerun_of_finished_run_changes_no_file_and_returns_its_summary(finished, capsys):
    workdir, summary = finished
    before = tree_digest(workdir)
    again = train_and_evaluate(tiny_config(), str(workdir))
    assert tree_digest(workdir) == before
    assert again == json.loads((workdir / "summary.json").read_text())
    assert again["test_loss"] == summary["test_loss"]
    assert f"already finished; nothing to do. Summary in {workdir / 'summary.json'}" in capsys.readouterr().out


def test_result_neutral_fields_may_change(finished):
    workdir, summary = finished
    before = tree_digest(workdir)
    c = tiny_config(progress_bar=True, tensorboard=True, checkpoint_every_steps=5, checkpoint_keep=1,
                    **{"dataset.num_threads": 2})
    assert train_and_evaluate(c, str(workdir))["test_loss"] == summary["test_loss"]
    assert tree_digest(workdir) == before


CHANGES = [
    ({"optimizer.learning_rate": 3e-4}, ["optimizer.learning_rate: 0.001 in the workdir's run, 0.0003 now"]),
    ({"dataset.name": "digits"}, ["dataset.name: 'synthetic' in the workdir's run, 'digits' now"]),
    ({"batch_size": 32, "seed": 1}, ["batch_size: 64 in the workdir's run, 32 now", "seed: 0 in the workdir's run, 1 now"]),
    ({"num_epochs": 3}, ["num_epochs: 2 in the workdir's run, 3 now"]),  # extending a run is refused too
    ({"augment.hflip": False, "ema_decay": 0.5},
     ["augment.hflip: True in the workdir's run, False now", "ema_decay: 0.0 in the workdir's run, 0.5 now"]),
]


@pytest.mark.parametrize("overrides, lines", CHANGES)
def test_changed_config_is_refused_and_the_workdir_unchanged(finished, tmp_path, overrides, lines):
    workdir, _ = finished
    # The finished run, and the same run before it finished (no summary): both refuse another config.
    unfinished = tmp_path / "unfinished"
    shutil.copytree(workdir, unfinished)
    (unfinished / "summary.json").unlink()
    for w in (workdir, unfinished):
        before = tree_digest(w)
        with pytest.raises(ConfigMismatchError) as info:
            train_and_evaluate(tiny_config(**overrides), str(w))
        message = str(info.value)
        assert "\n" not in message and "use another --workdir" in message
        assert f"{len(lines)} field(s) differ" in message
        for line in lines:
            assert line in message
        assert tree_digest(w) == before


def test_config_differences_and_finished_summary(finished, tmp_path):
    workdir, summary = finished
    saved = json.loads((workdir / "config.json").read_text())
    assert config_differences(saved, tiny_config()) == []
    assert config_differences(saved, tiny_config(progress_bar=True)) == []  # result-neutral
    assert "progress_bar" in RESULT_NEUTRAL_FIELDS and "optimizer.learning_rate" not in RESULT_NEUTRAL_FIELDS
    assert config_differences(saved, tiny_config(**{"optimizer.momentum": 0.5})) == [
        "optimizer.momentum: 0.9 in the workdir's run, 0.5 now"]
    extra = tiny_config()
    extra.model.kwargs.dropout = 0.1
    assert config_differences(saved, extra) == ["model.kwargs: {} in the workdir's run, (absent) now",
                                                "model.kwargs.dropout: (absent) in the workdir's run, 0.1 now"]
    assert finished_summary(tiny_config(), str(workdir)) == summary
    assert finished_summary(tiny_config(), str(tmp_path / "nothing")) is None  # no folder at all
    assert finished_summary(tiny_config(), str(tmp_path)) is None  # an empty folder
    with pytest.raises(ConfigMismatchError, match=r"seed: 0 in the workdir's run, 5 now"):
        finished_summary(tiny_config(seed=5), str(workdir))
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    (orphan / "summary.json").write_text("{}")
    with pytest.raises(ConfigMismatchError, match="no config.json, so its run's config is unknown"):
        finished_summary(tiny_config(), str(orphan))


BAD_VALUES = [
    ("eval_batch_size", 0, r"eval_batch_size=0 must be an int >= 1"),
    ("dataset.train_limit", -5, r"dataset.train_limit=-5 must be an int >= 0"),
    ("dataset.test_limit", -1, r"dataset.test_limit=-1 must be an int >= 0"),
    ("dataset.validation_size", -3, r"dataset.validation_size=-3 must be an int >= 0"),
    ("checkpoint_keep", 0, r"checkpoint_keep=0 must be an int >= 1"),
    ("checkpoint_every_steps", -1, r"checkpoint_every_steps=-1 must be an int >= 0"),
    ("ema_decay", 1.0, r"ema_decay=1.0 must be a number in \[0.0, 1.0\)"),
    ("label_smoothing", 1.5, r"label_smoothing=1.5 must be a number in \[0.0, 1.0\)"),
    ("label_smoothing", -0.1, r"label_smoothing=-0.1 must be a number in \[0.0, 1.0\)"),
    ("seed", -1, r"seed=-1 must be an int >= 0"),
    ("batch_size", 0, r"batch_size=0 must be an int >= 1"),
    ("eval_with_ema", True, r"eval_with_ema=True needs ema_decay > 0"),
    ("dataset.num_threads", -2, r"dataset.num_threads=-2 must be an int >= 0"),
    ("dataset.validation_split", 1.0, r"dataset.validation_split=1.0 must be a number in \[0.0, 1.0\)"),
    ("dataset.target_size", (0, 8), r"dataset.target_size=\(0, 8\) must be \(height, width\)"),
    ("dataset.color_mode", "cmyk", r"dataset.color_mode='cmyk' is not allowed; allowed: 'grayscale'"),
    ("optimizer.momentum", 1.5, r"optimizer.momentum=1.5 must be a number in \[0.0, 1.0\)"),
    ("optimizer.grad_clip_norm", -1.0, r"optimizer.grad_clip_norm=-1.0 must be a number >= 0.0"),
    ("optimizer.warmup_epochs", -1, r"optimizer.warmup_epochs=-1 must be an int >= 0"),
    ("optimizer.decay_factor", -0.1, r"optimizer.decay_factor=-0.1 must be a number >= 0.0"),
]


@pytest.fixture
def no_training_loop(monkeypatch):
    """Fail the test if the training loop starts."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the training loop started")

    monkeypatch.setattr(train_lib, "_train_epoch", forbidden)


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if the data set is loaded or the loop starts: bad values must be caught before."""
    def forbidden(*args, **kwargs):
        raise AssertionError("got past the config checks")

    monkeypatch.setattr(train_lib, "get_dataset", forbidden)
    monkeypatch.setattr(train_lib, "_train_epoch", forbidden)


@pytest.mark.parametrize("field, value, message", BAD_VALUES)
def test_bad_value_is_one_line_before_any_training_or_writing(tmp_path, no_training, field, value, message):
    workdir = tmp_path / "w"
    with pytest.raises((ValueError, TypeError), match=message) as info:
        train_and_evaluate(tiny_config(**{field: value}), str(workdir))
    assert "\n" not in str(info.value)
    assert not workdir.exists()


def test_bad_value_is_refused_on_an_existing_workdir_without_change(finished):
    workdir, _ = finished
    before = tree_digest(workdir)
    with pytest.raises(ValueError, match="eval_batch_size=0"):
        train_and_evaluate(tiny_config(eval_batch_size=0), str(workdir))
    assert tree_digest(workdir) == before


def test_num_classes_below_two_is_refused_before_writing(tmp_path, monkeypatch):
    from cnnjax.data.sources import synthetic_dataset

    monkeypatch.setattr(train_lib, "get_dataset", lambda config: synthetic_dataset(num_classes=1))
    with pytest.raises(ValueError, match=r"has 1 class\(es\) \['0'\]; a classifier needs at least 2"):
        train_and_evaluate(tiny_config(), str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_model_that_cannot_be_built_leaves_no_workdir(tmp_path):
    c = tiny_config()
    c.model.kwargs.conv = "no_such_variant"
    with pytest.raises(ValueError, match="no_such_variant"):
        train_and_evaluate(c, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_refused_start_on_a_new_folder_creates_nothing(tmp_path):
    with pytest.raises(ValueError):
        train_and_evaluate(tiny_config(**{"dataset.name": "nonexistent"}), str(tmp_path / "new"))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- damaged checkpoints

def flip_bytes(workdir, step: int, count: int = 64) -> str:
    """Invert ``count`` bytes in the middle of the largest array file of checkpoint ``step``. The arrays are
    zstd-compressed, so this may fail to decode or decode to wrong values, depending on where it lands."""
    files = [os.path.join(r, f) for r, _, fs in os.walk(workdir / "checkpoints" / "latest" / str(step) / "state")
             for f in fs]
    path = max(files, key=os.path.getsize)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        chunk = f.read(count)
        f.seek(os.path.getsize(path) // 2)
        f.write(bytes(b ^ 0xFF for b in chunk))
    return path


def change_one_value(workdir, step: int) -> None:
    """Rewrite checkpoint ``step``'s arrays with one float moved by one ulp: a well-formed checkpoint that
    decodes without any error, whose saved digest no longer matches (the silent case only the digest sees)."""
    import orbax.checkpoint as ocp

    state = os.path.abspath(workdir / "checkpoints" / "latest" / str(step) / "state")
    checkpointer = ocp.StandardCheckpointer()
    tree = checkpointer.restore(state)
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    largest = max(range(len(leaves)), key=lambda i: np.size(leaves[i]))
    changed = np.array(leaves[largest])
    changed.flat[0] = np.nextafter(changed.flat[0], np.float32(np.inf))
    leaves[largest] = changed
    shutil.rmtree(state)
    checkpointer.save(state, jax.tree_util.tree_unflatten(treedef, leaves))
    checkpointer.wait_until_finished()
    checkpointer.close()


@pytest.mark.parametrize("damage, reason", [
    (change_one_value, r"CorruptCheckpointError: .*sha256 of the restored arrays"),
    (flip_bytes, r"\w+: "),  # a decoding error or the digest, whichever the bytes hit
])
def test_damaged_checkpoint_is_never_loaded_and_the_run_ends_bitwise_equal(finished, tmp_path, damage, reason):
    """The newest checkpoint is damaged (one value changed by one ulp in a well-formed checkpoint, or 64
    inverted bytes): it is moved aside and the run resumes from the previous one, ending exactly as the
    uninterrupted run."""
    reference, _ = finished
    workdir = tmp_path / "w"
    shutil.copytree(reference, workdir)
    (workdir / "summary.json").unlink()
    newest = max(checkpoint_steps(workdir))
    damage(workdir, newest)
    with pytest.warns(UnreadableCheckpointWarning, match=rf"checkpoint at step {newest} is unreadable "
                      rf"\({reason}.*falling back to the previous one"):
        train_and_evaluate(tiny_config(), str(workdir))
    assert (workdir / "checkpoints" / f"unreadable-{newest}" / "state").is_dir()
    assert_same_run(workdir, reference)


def test_a_changed_json_item_is_caught_and_quarantine_never_collides(tmp_path):
    """The digest also covers the checkpoint's JSON item (iterator position, running sums, history); a second
    unreadable checkpoint of the same step goes to ``unreadable-<step>.2``."""
    tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.asarray(2, np.int32)}
    for attempt, aside in ((1, "unreadable-2"), (2, "unreadable-2.2")):
        checkpoints = Checkpoints(str(tmp_path), keep=5)
        for step in (1, 2) if attempt == 1 else (2,):
            checkpoints.save(step, tree, {"epoch": 0, "batch": step, "history": {"images_seen": 64 * step}})
        checkpoints.close()
        metadata = tmp_path / "checkpoints" / "latest" / "2" / "data" / "metadata"
        data = json.loads(metadata.read_text())
        data["history"]["images_seen"] += 1  # still valid JSON, still the same structure
        metadata.write_text(json.dumps(data))
        checkpoints = Checkpoints(str(tmp_path), keep=5)
        with pytest.warns(UnreadableCheckpointWarning, match=rf"step 2 is unreadable \(CorruptCheckpointError.*{aside}"):
            restored, data = checkpoints.restore_latest(abstract_tree(tree), identity={})
        checkpoints.close()
        assert data["batch"] == 1 and (tmp_path / "checkpoints" / aside / "data").is_dir()
        np.testing.assert_array_equal(restored["w"], tree["w"])


# ---------------------------------------------------------------- Ctrl-C

def test_sigint_saves_a_checkpoint_and_the_rerun_is_bitwise_equal(finished, tmp_path, monkeypatch):
    """SIGINT arrives while batch 11 is read (epoch 2, mid-epoch): the loop saves a checkpoint after its
    current step and raises TrainingInterrupted; the rerun ends as the uninterrupted run did."""
    reference, _ = finished
    real_get_dataset = train_lib.get_dataset
    calls = {"n": 0}

    class Interrupting:
        def __init__(self, source):
            self.source = source

        def __len__(self):
            return len(self.source)

        @property
        def image_shape(self):
            return self.source.image_shape

        @property
        def labels(self):
            return self.source.labels

        def __getitem__(self, i):
            return self.source[i]

        def get_batch(self, indices):
            calls["n"] += 1
            if calls["n"] == 11:
                signal.raise_signal(signal.SIGINT)
            return self.source.get_batch(indices)

    def get_dataset(config):
        ds = real_get_dataset(config)
        return dataclasses.replace(ds, train=Interrupting(ds.train))

    monkeypatch.setattr(train_lib, "get_dataset", get_dataset)
    workdir = tmp_path / "w"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (not SIG_IGN)
    try:
        with pytest.raises(TrainingInterrupted) as info:
            train_and_evaluate(tiny_config(), str(workdir))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are restored
    finally:
        signal.signal(signal.SIGINT, previous)
    step = info.value.step
    assert info.value.signum == signal.SIGINT and str(info.value) == (
        f"interrupted at step {step}; rerun the same command to resume")
    assert 8 < step < 16 and step in checkpoint_steps(workdir) and not (workdir / "summary.json").exists()
    monkeypatch.setattr(train_lib, "get_dataset", real_get_dataset)
    train_and_evaluate(tiny_config(), str(workdir))
    assert_same_run(workdir, reference)


# ---------------------------------------------------------------- the data set, checked once when loaded

def test_labels_outside_the_classes_are_refused_before_training(tmp_path, no_training_loop):
    from cnnjax.data.idx import write_idx

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 64), ("t10k", 16)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        if prefix == "train":
            labels[37] = 10
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)).astype(np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels)
    c = tiny_config(**{"dataset.name": "mnist", "dataset.data_dir": str(tmp_path), "batch_size": 16})
    with pytest.raises(ValueError, match=r"the train split has 1 label\(s\) outside \[0, 10\) for its 10 classes, "
                                         r"the first 10 at example 37"):
        train_and_evaluate(c, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_init_from_a_damaged_workdir_is_refused(finished, tmp_path):
    """``init_from`` reads another workdir's newest checkpoint: it is verified like a resumed one."""
    from cnnjax.training.checkpoint import CorruptCheckpointError
    from cnnjax.training.pretrained import read_pretrained

    reference, _ = finished
    good = read_pretrained(str(reference))  # restored without the state's structure: same digest
    assert set(good) == {"params", "batch_stats"} and "conv1" in good["params"]
    for damage, reason in ((change_one_value, r"checkpoint at step 16: sha256 of the restored arrays"),
                           (flip_bytes, r"\S")):
        workdir = tmp_path / damage.__name__
        shutil.copytree(reference, workdir)
        damage(workdir, max(checkpoint_steps(workdir)))
        with pytest.raises(CorruptCheckpointError, match=r"init_from=.*: the checkpoint at step 16 cannot be "
                                                         rf"trusted \({reason}"):
            read_pretrained(str(workdir))


def test_checkpoint_of_another_code_version_is_refused_without_change(finished, tmp_path, monkeypatch):
    """Same config, but the code now builds another state (here: a different parameter count): the checkpoint
    is refused before the metric writer adds a TensorBoard file, and the workdir is unchanged."""
    from cnnjax.training.checkpoint import CheckpointMismatchError

    reference, _ = finished
    workdir = tmp_path / "w"
    shutil.copytree(reference, workdir)
    (workdir / "summary.json").unlink()
    before = tree_digest(workdir)
    real = train_lib.checkpoint_identity
    monkeypatch.setattr(train_lib, "checkpoint_identity", lambda *args: {**real(*args), "num_params": 1})
    with pytest.raises(CheckpointMismatchError, match="use another --workdir"):
        train_and_evaluate(tiny_config(tensorboard=True), str(workdir))
    assert tree_digest(workdir) == before
