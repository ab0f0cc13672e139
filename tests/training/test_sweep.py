"""Sweeps end to end through the real CLI (``python -m experiments.sweep``) on a tiny synthetic sweep:
results, a re-run that trains nothing, a SIGKILLed sweep resumed, ``--collect``, the conv_ablation dry run."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import pytest

from cnnjax.models import get_model
from cnnjax.training import executable_cache
from cnnjax.training.sweeps import collect, plan
from tests.conftest import REPO_ROOT

TINY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sweep_config_tiny.py")
TRIALS = ["conv=standard,seed=0", "conv=standard,seed=1", "conv=dilated-2,seed=0", "conv=dilated-2,seed=1"]
OUTPUTS = ("results.csv", "results.md", "accuracy_vs_params.png", "accuracy_vs_flops.png", "learning_curves.png")
DETERMINISTIC = ("trial", "model.kwargs.conv", "seed", "test_accuracy", "test_loss", "num_params", "flops_per_example")


def sweep_cli(*args, **popen):
    cmd = [sys.executable, "-m", "experiments.sweep", *args]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def finish(process, timeout=300):
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out
    return out


def deterministic_columns(csv_text: str) -> list[list[str]]:
    lines = [line for line in csv_text.splitlines() if line]
    import csv

    rows = list(csv.reader(lines))
    keep = [rows[0].index(c) for c in DETERMINISTIC]
    return [[r[i] for i in keep] for r in rows]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The tiny sweep, run once through the CLI with the default workers (one process per core), with an empty
    cache folder of its own."""
    root = tmp_path_factory.mktemp("sweep")
    workdir = root / "tiny"
    env = {**os.environ, "CNNJAX_CACHE_DIR": str(root / "cache")}
    out = finish(sweep_cli(f"--config={TINY}", f"--workdir={workdir}", env=env))
    return workdir, out


def test_trial_processes_use_the_sweeps_caches(swept):
    """The worker processes keep their programs in the sweep's executable cache: one set per conv variant (the
    initial state, the step, the evaluation), which its two seeds share."""
    workdir, _ = swept
    names = [n for n in os.listdir(workdir.parent / "cache" / "executables") if n.endswith(executable_cache.SUFFIX)]
    assert sorted(n.split("-")[0] for n in names) == sorted(
        ["create_train_state", "cnnjax.training.steps.train_step_and_sum", "cnnjax.training.steps.eval_step"] * 2)


def test_default_workers_are_one_per_core(swept):
    _, out = swept
    workers = min(len(os.sched_getaffinity(0)), len(TRIALS))
    used = {int(w) for w in re.findall(r"\(worker (\d+), cores \[[\d, ]+\]\)", out)}
    assert used == (set(range(workers)) if workers > 1 else set()), out


def test_sweep_writes_every_trial_results_and_plots(swept):
    workdir, out = swept
    assert sorted(os.listdir(workdir)) == sorted([*TRIALS, *OUTPUTS])
    md = (workdir / "results.md").read_text()
    assert re.search(r"\| conv=standard \| 2 \| 0\.\d{4} ± 0\.\d{4} \|", md), md
    assert re.search(r"\| conv=dilated:2 \| 2 \| 0\.\d{4} ± 0\.\d{4} \|", md), md
    assert md in out  # the table is printed too
    csv_rows = deterministic_columns((workdir / "results.csv").read_text())
    assert [r[0] for r in csv_rows[1:]] == TRIALS
    for name in OUTPUTS[2:]:
        assert (workdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for trial in TRIALS:  # each trial in its own worker process, one core each
        assert "test accuracy" in (workdir / trial / "sweep_worker.log").read_text()


def test_each_trial_built_its_variant(swept):
    """The summary's parameter count is the one of the model built with the override, not of the base."""
    import json

    workdir, _ = swept
    counts = {}
    for conv in ("standard", "dilated:2"):
        model = get_model("lenet5", num_classes=10, conv=conv)
        params = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))["params"]
        counts[conv] = sum(int(jnp.size(p)) for p in jax.tree_util.tree_leaves(params))
    assert counts["standard"] != counts["dilated:2"]
    for trial in TRIALS:
        summary = json.loads((workdir / trial / "summary.json").read_text())
        config = json.loads((workdir / trial / "config.json").read_text())
        conv = config["model"]["kwargs"]["conv"]
        assert summary["num_params"] == counts[conv], trial
        assert config["seed"] == int(trial[-1])


def test_rerun_trains_nothing_and_rewrites_identical_files(swept):
    workdir, _ = swept
    before = {n: (workdir / n).read_bytes() for n in OUTPUTS}
    stamps = {t: os.stat(workdir / t / "summary.json").st_mtime_ns for t in TRIALS}
    out = finish(sweep_cli(f"--config={TINY}", f"--workdir={workdir}"))
    assert "4 trial(s): 4 finished, 0 to train" in out
    assert "epoch 1/1" not in out
    assert {t: os.stat(workdir / t / "summary.json").st_mtime_ns for t in TRIALS} == stamps
    for name in OUTPUTS:
        os.remove(workdir / name)
    collect(str(workdir), TRIALS)  # regenerated from the trial folders alone
    assert {n: (workdir / n).read_bytes() for n in OUTPUTS} == before


def _mid_trial(workdir, trials):
    """True once some trial has a finished checkpoint and no summary yet."""
    for t in trials:
        latest = workdir / t / "checkpoints" / "latest"
        if latest.is_dir() and any(re.fullmatch(r"\d+", n) for n in os.listdir(latest)) \
                and not (workdir / t / "summary.json").exists():
            return True
    return False


def test_sweep_killed_mid_trial_resumes_to_the_same_results(swept, tmp_path):
    reference, _ = swept
    workdir = tmp_path / "killed"
    only = "conv=standard,*"
    process = sweep_cli(f"--config={TINY}", f"--workdir={workdir}", f"--only={only}", "--workers=2")
    deadline = time.time() + 240
    while not _mid_trial(workdir, TRIALS[:2]):
        assert process.poll() is None, "the sweep ended before it could be killed mid-trial"
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert not all((workdir / t / "summary.json").exists() for t in TRIALS[:2])
    out = finish(sweep_cli(f"--config={TINY}", f"--workdir={workdir}", f"--only={only}", "--workers=2"))
    assert "resumed from the checkpoint" in "".join((workdir / t / "sweep_worker.log").read_text() for t in TRIALS[:2])
    assert "0 finished" in out or "1 finished" in out
    got = deterministic_columns((workdir / "results.csv").read_text())
    want = deterministic_columns((reference / "results.csv").read_text())
    assert got == want[:3]  # header + the two standard trials, same accuracy and loss


def test_collect_gathers_trials_trained_elsewhere(swept, tmp_path):
    reference, _ = swept
    gathered = tmp_path / "gathered"
    for t in TRIALS[2:]:  # e.g. copied back from cluster jobs
        shutil.copytree(reference / t, gathered / t)
    out = finish(sweep_cli(f"--config={TINY}", f"--workdir={gathered}", "--collect"))
    assert "collected 2 finished trial(s) of 4" in out and "not finished: conv=standard,seed=0" in out
    assert deterministic_columns((gathered / "results.csv").read_text())[1:] == \
        deterministic_columns((reference / "results.csv").read_text())[3:]


def test_conv_ablation_dry_run_lists_eight_variants_times_three_seeds(tmp_path):
    workdir = tmp_path / "never"
    out = finish(sweep_cli("--config=conv_ablation", f"--workdir={workdir}", "--dry-run"))
    lines = out.strip().splitlines()
    assert lines[-1] == "24 trial(s), 8 point(s)"
    trials = [line for line in lines if line.startswith("conv=")]
    assert len(trials) == 24
    for v in ("standard", "depthwise", "separable", "grouped:2", "dilated:2", "deformable", "deformable_v2",
              "locally_connected"):
        assert sum(f"model.kwargs.conv={v!r}, seed=" in t for t in trials) == 3, v
    assert "model.kwargs.conv='standard', seed=2" in out
    assert not workdir.exists()  # nothing trained, nothing written


def test_conv_ablation_runlocal_is_two_variants_times_two_seeds():
    from configs.conv_ablation import get_config

    trials = plan(get_config("runlocal"))
    assert [t.name for t in trials] == TRIALS
    assert all(t.config.dataset.train_limit == 2048 for t in trials)
