"""Shared pieces of the resume and fault-injection tests (test_resume.py, test_reliability*.py): tiny configs,
what must be equal between two runs, and their checkpoints."""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from tests.conftest import REPO_ROOT, synthetic_config

TINY = {"num_epochs": 2, "checkpoint_every_steps": 3, "checkpoint_keep": 3, "augment.hflip": True}


def tiny_config(**overrides):
    """LeNet-5 on the synthetic set (512 train, 128 test), batch 64: 8 steps per epoch, 2 epochs, seconds per run."""
    return synthetic_config(**{**TINY, **overrides})


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
    keys = ("test_accuracy", "test_loss", "test_count", "best_validation_accuracy", "steps", "num_params", "epochs")
    return {k: summary[k] for k in keys}, records


def checkpoint_steps(workdir) -> list[int]:
    """The steps of the checkpoints in ``workdir/checkpoints/latest`` (none if there is no such folder)."""
    root = pathlib.Path(workdir) / "checkpoints" / "latest"
    return sorted(int(d) for d in os.listdir(root) if d.isdigit()) if root.exists() else []


def final_arrays(workdir) -> dict:
    """Every array of the newest checkpoint (params, BatchNorm statistics, optimizer state, EMA, rng)."""
    state = pathlib.Path(workdir) / "checkpoints" / "latest" / str(max(checkpoint_steps(workdir))) / "state"
    tree = ocp.StandardCheckpointer().restore(str(state))
    return {jax.tree_util.keystr(p): np.asarray(a) for p, a in jax.tree_util.tree_flatten_with_path(tree)[0]}


def assert_same_run(workdir, reference, with_ema: bool = False):
    """Bitwise the same summary numbers, metrics and final arrays (``with_ema``: the runs keep an EMA)."""
    assert results(workdir) == results(reference)
    mine, theirs = final_arrays(workdir), final_arrays(reference)
    assert mine.keys() == theirs.keys()
    assert not with_ema or any(k.startswith("['ema_params']") for k in mine)
    for k in mine:
        np.testing.assert_array_equal(mine[k], theirs[k], err_msg=k)


# The CLI version of a tiny run: 512 synthetic images, batch 32 -> 16 steps per epoch, 2 epochs, no
# periodic checkpoints (so a mid-epoch checkpoint can only come from a signal), flips and an EMA.
CLI_ARGS = ["--config=lenet:runlocal", "--config.dataset.name=synthetic", "--config.num_epochs=2",
            "--config.batch_size=32", "--config.eval_batch_size=64", "--config.checkpoint_every_steps=0",
            "--config.progress_bar=False", "--config.tensorboard=False"]


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "experiments.run", *args]


def run_cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
