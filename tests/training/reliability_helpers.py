"""Shared pieces of the fault-injection suite (tests/training/test_reliability_*.py)."""

import hashlib
import json
import os
import subprocess
import sys

from configs._base import base_config
from tests.conftest import REPO_ROOT


def tiny_config(**overrides):
    """LeNet-5 on the synthetic set (512 train, 128 test), batch 64: 8 steps per epoch, seconds per run."""
    c = base_config()
    c.dataset.name = "synthetic"
    c.num_epochs, c.batch_size, c.eval_batch_size = 2, 64, 64
    c.progress_bar = c.tensorboard = False
    c.checkpoint_every_steps = 3
    c.checkpoint_keep = 3
    c.augment.hflip = True
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def tree_digest(root) -> dict:
    """``{relative path: sha256 of the bytes}`` for every file under ``root`` (folders as ``"<dir>"``)."""
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "<dir>"
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def results(workdir) -> tuple[dict, list]:
    """What must be bitwise equal between two runs of one config: the summary's numbers and every metric."""
    workdir = str(workdir)
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [{k: v for k, v in json.loads(line).items() if k != "time"} for line in f if line.strip()]
    keys = ("test_accuracy", "test_loss", "test_count", "best_validation_accuracy", "steps", "num_params")
    return {k: summary[k] for k in keys}, records


# The CLI version of a tiny run: 512 synthetic images, batch 32 -> 16 steps per epoch, 2 epochs, no
# periodic checkpoints (so a mid-epoch checkpoint can only come from a signal), flips and an EMA.
CLI_ARGS = ["--config=lenet:runlocal", "--config.dataset.name=synthetic", "--config.num_epochs=2",
            "--config.batch_size=32", "--config.eval_batch_size=64", "--config.checkpoint_every_steps=0",
            "--config.progress_bar=False", "--config.tensorboard=False"]


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "experiments.run", *args]


def run_cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
