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


def run_entry_point(module, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)


ONE_LINE_ERRORS = [
    ("experiments.run", ["--config=lenet:runlocal", "--config.optimizr.name=sgd"],
     "error: --config.optimizr.name: the config has no field 'optimizr'; did you mean optimizer?"),
    ("experiments.run", ["--config=lenet:runlocal", "--config.model.kwargs.widths=3"],
     "error: --config.model.kwargs.widths: model.kwargs has no field 'widths'; model.kwargs has: conv "
     "(model keyword arguments must be declared in the config file to be set here)"),
    ("experiments.run", ["--config=lenet:runlocal", "--config.model.kwargs.conv=bogus"],
     "conv='bogus' is unknown; allowed: "),
    ("experiments.run", ["--config=configs/no_such_file.py"],
     "error: --config='configs/no_such_file.py': no config file 'configs/no_such_file.py'"),
    ("experiments.run", ["--config=lenet:runlocal", "--config.eval_batch_size=0"],
     "error: eval_batch_size=0 must be an int >= 1"),
    ("experiments.sweep", ["--config=conv_ablation:runlocal", "--config.datset.name=digits"],
     "error: --config.datset.name: the config has no field 'datset'; did you mean dataset?"),
    ("experiments.summary", ["--config=lenet", "--config.model.nme=resnet20"],
     "error: --config.model.nme: model has no field 'nme'; did you mean name?"),
]


@pytest.mark.parametrize("module, args, message", ONE_LINE_ERRORS)
def test_config_mistakes_are_one_line(tmp_path, module, args, message):
    workdir = tmp_path / "w"
    r = run_entry_point(module, *args, f"--workdir={workdir}") if module != "experiments.summary" else \
        run_entry_point(module, *args)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ") and message in r.stderr, r.stderr
    assert not workdir.exists()


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
