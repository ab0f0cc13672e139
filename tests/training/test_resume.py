"""Exact resume: in process on synthetic data (seconds), and end to end through the CLI with SIGKILL on
Fashion-MNIST.

A resumed run must end with the numbers of the uninterrupted one: every metrics.jsonl record, the summary
and the final weights, bitwise.
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from cnnjax.training.train import train_and_evaluate
from tests.conftest import REPO_ROOT
from tests.training.run_helpers import assert_same_run, checkpoint_steps, results

# 2048 real Fashion-MNIST images, batch 64 -> 32 steps per epoch, 2 epochs, a checkpoint every 4 steps.
# EMA 0.9 (not the recipe's 0.999, whose average after 64 steps is still the initial weights, at chance
# accuracy): the evaluated weights are far from their initial values, so equal numbers mean equal training.
ARGS = ["--config=lenet", "--config.progress_bar=False", "--config.num_epochs=2", "--config.batch_size=64",
        "--config.dataset.train_limit=2048", "--config.dataset.test_limit=1000", "--config.dataset.validation_size=512",
        "--config.checkpoint_every_steps=4", "--config.tensorboard=False", "--config.augment.hflip=True",
        "--config.augment.shift_pixels=2", "--config.ema_decay=0.9"]
def rewind(workdir, step):
    """Make a finished workdir look interrupted after ``step``: later checkpoints and the summary removed."""
    for later in (s for s in checkpoint_steps(workdir) if s > step):
        shutil.rmtree(workdir / "checkpoints" / "latest" / str(later))
    (workdir / "summary.json").unlink()


# ---------------------------------------------------------------- in process, synthetic data (conftest.SYNTHETIC_RUN)

def test_synthetic_run_is_far_from_its_start(synthetic_run):
    """The reference run for the resume tests: 12 steps, every checkpoint kept, trained well past chance."""
    _, workdir, summary = synthetic_run
    assert summary["steps"] == 12 and checkpoint_steps(workdir) == [2, 4, 6, 8, 10, 12]
    assert summary["test_loss"] < 0.95 * np.log(10)  # the initial weights give ~log(10), the uniform guess


def test_resume_from_a_mid_epoch_checkpoint_is_exact(synthetic_run, tmp_path, capsys):
    """Interrupted after batch 4 of the 6 of epoch 1: the rerun continues at batch 4 with the epoch's sums and
    ends with the same metrics.jsonl (line for line), summary and final arrays as the uninterrupted run."""
    config, reference, _ = synthetic_run
    workdir = tmp_path / "w"
    shutil.copytree(reference, workdir)
    rewind(workdir, 4)
    capsys.readouterr()
    train_and_evaluate(config, str(workdir))
    assert "resumed from the checkpoint at step 4 (epoch 1, batch 4)" in capsys.readouterr().out
    assert_same_run(workdir, reference, with_ema=True)


def test_truncated_latest_checkpoint_falls_back(synthetic_run, tmp_path, capsys, caplog):
    """The final checkpoint (step 12) cut in half: the rerun warns, resumes from step 10 (epoch 2, batch 4) and
    ends exactly as the uninterrupted run."""
    config, reference, _ = synthetic_run
    workdir = tmp_path / "w"
    shutil.copytree(reference, workdir)
    (workdir / "summary.json").unlink()
    truncated = 0
    for root, _, files in os.walk(workdir / "checkpoints" / "latest" / "12" / "state"):
        for name in files:
            path = os.path.join(root, name)
            if os.path.getsize(path) > 64:
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
                truncated += 1
    assert truncated
    capsys.readouterr()
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        train_and_evaluate(config, str(workdir))
    messages = [r.getMessage() for r in caplog.records] + [str(w.message) for w in warned]
    assert any("checkpoint at step 12 is unreadable" in m and "falling back to the previous one" in m
               for m in messages), messages
    assert "resumed from the checkpoint at step 10 (epoch 2, batch 4)" in capsys.readouterr().out
    assert_same_run(workdir, reference, with_ema=True)


@pytest.mark.parametrize("field, value, message", [
    ("optimizer.name", "sgd", "optimizer.name: 'adam' in the workdir's run, 'sgd' now"),
    # the same parameters, another model: like a ResNet-20 with conv=standard and one with conv=dilated:2
    ("model.kwargs.dropout", 0.3, "model.kwargs.dropout: 0.1 in the workdir's run, 0.3 now"),
])
def test_checkpoint_of_another_setup_is_refused(synthetic_run, tmp_path, field, value, message):
    """Resuming an interrupted workdir with another optimizer, or another model of the same parameter shapes:
    refused, naming the field and both values, and nothing in the workdir changes."""
    config, reference, _ = synthetic_run
    workdir = tmp_path / "w"
    shutil.copytree(reference, workdir)
    rewind(workdir, 8)
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    other = config.copy_and_resolve_references()
    *parents, leaf = field.split(".")
    node = other
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ValueError, match=r"another --workdir") as refused:
        train_and_evaluate(other, str(workdir))
    assert message in str(refused.value)
    assert {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()} == before


def test_checkpoints_restore_the_newest_keep_n_and_the_best(tmp_path):
    """Checkpoints: restore_latest gives the newest of the ``keep`` kept, refuses another identity, and the best
    manager keeps the checkpoint of the highest validation accuracy."""
    from cnnjax.training.checkpoint import CheckpointMismatchError, Checkpoints, abstract_tree

    def tree(v):
        return {"w": np.full(3, v, np.float32), "step": np.asarray(v, np.int32)}

    checkpoints = Checkpoints(str(tmp_path), keep=2)
    try:
        for step, accuracy in [(1, 0.5), (2, 0.9), (3, 0.7)]:
            data = {"identity": {"model": "m"}, "epoch": step}
            checkpoints.save(step, tree(step), data)
            checkpoints.save_best(step, tree(step), data, accuracy)
        restored, data = checkpoints.restore_latest(abstract_tree(tree(0)), {"model": "m"})
        assert data["epoch"] == 3 and restored["w"].tolist() == [3.0] * 3
        assert checkpoint_steps(tmp_path) == [2, 3]
        assert [d for d in os.listdir(tmp_path / "checkpoints" / "best") if d.isdigit()] == ["2"]
        with pytest.raises(CheckpointMismatchError, match="'model': 'other'"):
            checkpoints.restore_latest(abstract_tree(tree(0)), {"model": "other"})
    finally:
        checkpoints.close()


# ---------------------------------------------------------------- through the CLI, real data, a real SIGKILL

def command(workdir, *extra):
    return [sys.executable, "-m", "experiments.run", *ARGS, *extra, f"--workdir={workdir}"]


def run(workdir, *extra):
    r = subprocess.run(command(workdir, *extra), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fashion_mnist_dir):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    run(workdir)
    accuracy = json.loads((workdir / "summary.json").read_text())["test_accuracy"]
    assert accuracy > 0.5, f"test accuracy {accuracy}: too close to chance for equal numbers to mean equal training"
    return workdir


@pytest.mark.slow  # test_sigkill_mid_epoch_resumes_exactly compares a second process's run with this one too
def test_same_seed_same_numbers(uninterrupted, tmp_path):
    run(tmp_path)
    assert results(tmp_path) == results(uninterrupted)


def test_sigkill_mid_epoch_resumes_exactly(uninterrupted, tmp_path):
    proc = subprocess.Popen(command(tmp_path), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not any(s >= 40 for s in checkpoint_steps(tmp_path)):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (tmp_path / "summary.json").exists(), "the run finished before it could be killed"
    killed_at = max(checkpoint_steps(tmp_path))
    assert 40 <= killed_at < 64
    r = run(tmp_path)
    assert "resumed from the checkpoint at step" in r.stdout
    resumed_step = int(r.stdout.split("resumed from the checkpoint at step ")[1].split()[0])
    assert resumed_step % 32 != 0, "expected a mid-epoch checkpoint"
    assert_same_run(tmp_path, uninterrupted, with_ema=True)


def test_best_checkpoint_kept(uninterrupted):
    best = uninterrupted / "checkpoints" / "best"
    assert len([d for d in os.listdir(best) if d.isdigit()]) == 1
    assert len(checkpoint_steps(uninterrupted)) == 2  # checkpoint_keep
