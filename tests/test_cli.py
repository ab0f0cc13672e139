"""End to end: the real CLI on a small slice of real Fashion-MNIST."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_lenet_runlocal_end_to_end(tmp_path, fashion_mnist_dir):
    workdir = tmp_path / "run"
    r = run_cli("--config=lenet:runlocal", "--config.progress_bar=False", "--config.optimizer.learning_rate=2e-3",
                f"--workdir={workdir}")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    for key in ("test_accuracy", "num_params", "epochs", "steps", "wall_time_s", "train_images_per_s"):
        assert key in summary
    assert summary["num_params"] == 61_706
    assert summary["test_count"] == 1000 and summary["steps"] == 2048 // 128
    assert summary["test_accuracy"] > 0.5  # 16 Adam steps on real data are far above chance (0.1)
    config = json.loads((workdir / "config.json").read_text())
    assert config["optimizer"]["learning_rate"] == 2e-3
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {line["split"] for line in lines} >= {"train", "test"}


def test_unknown_config_lists_available():
    r = run_cli("--config=lenett")
    assert r.returncode != 0
    assert "no config named 'lenett'; available:" in r.stderr and "lenet" in r.stderr


def test_override_of_missing_field():
    r = run_cli("--config=lenet", "--config.optimizer.learnin_rate=3e-4")
    assert r.returncode != 0
    assert "learnin_rate" in r.stderr


def test_override_of_wrong_type():
    r = run_cli("--config=lenet", "--config.batch_size=abc")
    assert r.returncode != 0
    assert "batch_size" in r.stderr and "abc" in r.stderr


def test_missing_data_folder_message(tmp_path):
    r = run_cli("--config=lenet:runlocal", f"--config.dataset.data_dir={tmp_path / 'nothing'}",
                f"--workdir={tmp_path / 'w'}")
    assert r.returncode != 0
    assert "apt-get install dataset-fashion-mnist" in r.stderr


def test_unwritable_workdir_message(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run_cli("--config=lenet:runlocal", f"--workdir={blocker / 'sub'}")
    assert r.returncode != 0
    assert "is not writable" in r.stderr


@pytest.mark.slow
def test_lenet_full_run_reaches_0915(tmp_path, fashion_mnist_dir):
    r = run_cli("--config=lenet", "--config.progress_bar=False", f"--workdir={tmp_path}", timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.915 and summary["test_count"] == 10000
    assert summary["num_params"] == 61_706
