"""Exact resume end to end through the CLI: SIGKILL mid-epoch, truncated checkpoints, determinism."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from configs import lenet
from tests.conftest import REPO_ROOT

# 2048 real Fashion-MNIST images, batch 64 -> 32 steps per epoch, 2 epochs, a checkpoint every 4 steps.
ARGS = ["--config=lenet", "--config.progress_bar=False", "--config.num_epochs=2", "--config.batch_size=64",
        "--config.dataset.train_limit=2048", "--config.dataset.test_limit=1000", "--config.dataset.validation_size=512",
        "--config.checkpoint_every_steps=4", "--config.tensorboard=False", "--config.augment.hflip=True",
        "--config.augment.shift_pixels=2"]


def command(workdir, *extra):
    return [sys.executable, "-m", "experiments.run", *ARGS, *extra, f"--workdir={workdir}"]


def run(workdir, *extra):
    r = subprocess.run(command(workdir, *extra), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def results(workdir):
    summary = json.loads((workdir / "summary.json").read_text())
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    records = [{k: v for k, v in line.items() if k not in ("time",)} for line in lines]
    keys = ("test_accuracy", "test_loss", "test_count", "best_validation_accuracy", "steps", "num_params")
    return {k: summary[k] for k in keys}, records


def checkpoint_steps(workdir):
    root = workdir / "checkpoints" / "latest"
    if not root.exists():
        return []
    return sorted(int(d) for d in os.listdir(root) if d.isdigit())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fashion_mnist_dir):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    run(workdir)
    return workdir


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
    assert results(tmp_path) == results(uninterrupted)


def test_truncated_latest_checkpoint_falls_back(uninterrupted, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(uninterrupted, workdir)
    (workdir / "summary.json").unlink()
    latest = max(checkpoint_steps(workdir))
    state_dir = workdir / "checkpoints" / "latest" / str(latest) / "state"
    truncated = 0
    for root, _, files in os.walk(state_dir):
        for name in files:
            path = os.path.join(root, name)
            if os.path.getsize(path) > 64:
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
                truncated += 1
    assert truncated
    r = run(workdir)
    assert f"checkpoint at step {latest} is unreadable" in r.stderr
    assert "falling back to the previous one" in r.stderr
    assert results(workdir) == results(uninterrupted)


def test_checkpoint_of_another_setup_is_refused(uninterrupted, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(uninterrupted, workdir)
    r = subprocess.run(command(workdir, "--config.optimizer.name=sgd"), cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode != 0
    assert "use another --workdir" in r.stderr
    assert f"'optimizer': '{lenet.get_config().optimizer.name}'" in r.stderr and "'optimizer': 'sgd'" in r.stderr


def test_best_checkpoint_kept(uninterrupted):
    best = uninterrupted / "checkpoints" / "best"
    assert len([d for d in os.listdir(best) if d.isdigit()]) == 1
    assert len(checkpoint_steps(uninterrupted)) == 2  # checkpoint_keep
