"""Run reports: ``python -m experiments.report --workdir=DIR`` on a small finished run, and the pieces it uses."""

import subprocess
import sys

import numpy as np
import pytest

from cnnjax.training.report import (
    REPORT_FILES,
    check_run_dir,
    confusion_matrix,
    learning_curves,
    most_confused,
    plot_filters,
    restore_run,
)
from tests.conftest import REPO_ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_report(*args):
    return subprocess.run([sys.executable, "-m", "experiments.report", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)


def test_report_cli_writes_the_figures(synthetic_run, tmp_path):
    _, workdir, _ = synthetic_run  # conftest's shared run (read only: the figures go to --out_dir)
    out = tmp_path / "figures"
    r = run_report(f"--workdir={workdir}", f"--out_dir={out}", "--num_confused=4")
    assert r.returncode == 0, r.stderr[-3000:]
    for name in REPORT_FILES:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name
        assert str(out / name) in r.stdout


def test_restored_weights_give_the_summary_accuracy(synthetic_run):
    """The confusion matrix is computed with the weights the run's test accuracy was measured with (the shared
    run evaluates with an EMA of the weights)."""
    from cnnjax.training.report import predict, source_arrays

    _, workdir, summary = synthetic_run
    run = restore_run(str(workdir))
    images, labels = source_arrays(run.dataset.test)
    cm = confusion_matrix(labels, predict(run.model, run.variables, images).argmax(1), run.dataset.num_classes)
    assert cm.sum() == summary["test_count"]
    assert np.trace(cm) / cm.sum() == pytest.approx(summary["test_accuracy"], abs=1e-6)


def test_missing_workdir_is_a_one_line_error(tmp_path):
    workdir = tmp_path / "nothing"
    r = run_report(f"--workdir={workdir}")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: workdir=") and str(workdir) in lines[0], r.stderr


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"has no config.json: it is not the workdir of a run"):
        check_run_dir(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(FileNotFoundError, match="has no checkpoints/latest"):
        check_run_dir(str(tmp_path), need_checkpoints=True)


def test_learning_curves_per_split():
    records = [{"step": 10, "split": "train", "epoch": 1, "loss": 2.0, "accuracy": 0.3},
               {"step": 10, "split": "validation", "epoch": 1, "loss": 2.1, "accuracy": 0.25},
               {"step": 20, "split": "train", "epoch": 2, "loss": 1.0, "accuracy": 0.6},
               {"step": 20, "split": "test", "loss": 1.2, "accuracy": 0.55, "count": 100}]
    curves = learning_curves(records)
    assert curves["train"]["epoch"].tolist() == [1, 2] and curves["train"]["loss"].tolist() == [2.0, 1.0]
    assert curves["test"]["epoch"].tolist() == [2] and curves["test"]["accuracy"].tolist() == [0.55]


def test_confusion_matrix_counts():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_most_confused_orders_the_errors_by_confidence():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95]])
    labels = np.array([0, 0, 0, 1])  # examples 1 and 2 are wrong; 1 is the more confident
    assert most_confused(probabilities, labels, 5).tolist() == [1, 2]


def test_plot_filters_rejects_a_non_conv_kernel():
    with pytest.raises(ValueError, match=r"kernel.shape=\(3, 3\) must be \(kh, kw, C_in, C_out\)"):
        plot_filters(np.zeros((3, 3)))
