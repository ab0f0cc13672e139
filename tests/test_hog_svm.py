"""The classic baseline: hand-made features, the scikit-learn classifiers, and ``experiments.run --config=hog_svm``."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cnnjax.classic import (
    edge_grid_features,
    extract_features,
    hog_features,
    intensity_histogram_features,
    pixel_features,
    train_and_evaluate_classic,
)
from configs.hog_svm import get_config
from tests.conftest import REPO_ROOT


def _digits_config(classifier):
    config = get_config()
    config.dataset.name = "digits"  # scikit-learn's 8x8 digits: 1,437 train, 360 test images
    config.classic.features = ("hog", "pixels")
    config.classic.hog_pixels_per_cell = 2  # 4x4 cells, 3x3 blocks of 2x2 on an 8x8 image
    config.classic.pixels_size = 8
    config.classic.classifier = classifier
    config.classic.pca_components = 30 if classifier == "rbf_svm" else 0
    config.classic.C = 0.05 if classifier == "linear_svm" else 10.0  # a linear SVM converges fast with a small C
    config.classic.n_components = 300
    return config


@pytest.mark.parametrize("classifier", ["linear_svm", "rbf_svm", "nystroem_svm"])
def test_each_classifier_learns_digits(tmp_path, classifier):
    summary = train_and_evaluate_classic(_digits_config(classifier), str(tmp_path))
    assert summary["test_count"] == 360 and summary["train_count"] == 1437
    assert summary["num_features"] == 3 * 3 * 2 * 2 * 9 + 64
    assert summary["test_accuracy"] > 0.9, summary  # chance is 0.1
    assert json.loads((tmp_path / "summary.json").read_text()) == pytest.approx(summary)
    assert json.loads((tmp_path / "config.json").read_text())["classic"]["classifier"] == classifier
    splits = [json.loads(line)["split"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert splits == ["train", "test"]


def test_hog_svm_runlocal_end_to_end(tmp_path, fashion_mnist_dir):
    """The real command on a slice of real Fashion-MNIST."""
    workdir = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "experiments.run", "--config=hog_svm:runlocal",
                        "--config.dataset.train_limit=600", "--config.dataset.test_limit=300",
                        "--config.classic.pca_components=60", f"--workdir={workdir}"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    for key in ("test_accuracy", "wall_time_s", "cpu_time_s", "feature_time_s", "fit_time_s", "num_features"):
        assert key in summary
    assert summary["test_count"] == 300 and summary["num_features"] == 1296 + 4 * 16
    assert summary["test_accuracy"] > 0.7, summary  # 600 training images; chance is 0.1
    assert json.loads((workdir / "config.json").read_text())["trainer"] == "hog_svm"
    assert "test accuracy" in r.stdout


@pytest.mark.parametrize("field, value, message", [
    ("classifier", "svm", r"classic.classifier='svm' is unknown; allowed: linear_svm, rbf_svm, nystroem_svm"),
    ("features", ("hog", "sift"), r"\['sift'\] unknown; allowed: hog, edge_grid"),
    ("features", (), r"classic.features=\(\) must be a non-empty list"),
    ("C", 0.0, r"classic.C=0.0 must be a number > 0"),
    ("hog_pixels_per_cell", 0, r"classic.hog_pixels_per_cell=0 must be an int > 0"),
    ("pca_components", -1, r"classic.pca_components=-1 must be an int >= 0"),
    ("gamma", -1.0, r"classic.gamma=-1.0 must be a number >= 0"),
])
def test_bad_classic_config_is_refused_before_writing(tmp_path, field, value, message):
    config = get_config("runlocal")
    config.classic[field] = value
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        train_and_evaluate_classic(config, str(workdir))
    assert not os.path.exists(workdir)


def test_hog_of_a_vertical_edge():
    """A dark-left / bright-right image: all gradient energy in the 0-degree orientation bin (horizontal
    gradient), where the edge is; 28x28 with 4x4 cells and 2x2 blocks gives 6*6*2*2*9 = 1296 values."""
    image = np.zeros((1, 28, 28), np.uint8)
    image[:, :, 14:] = 255
    h = hog_features(image)
    assert h.shape == (1, 1296)
    blocks = h.reshape(6, 6, 2, 2, 9)  # block row, block col, cell row, cell col, orientation
    assert blocks[..., 1:].max() == 0 and blocks[..., 0].max() > 0
    energy = blocks.sum(axis=(0, 2, 3, 4))  # per block column: only blocks over column 14 respond
    assert np.flatnonzero(energy).tolist() == [2, 3]


def test_intensity_histograms_are_fractions():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    h = intensity_histogram_features(images, bins=8, grid=2)
    assert h.shape == (3, 4 * 8)
    np.testing.assert_allclose(h.reshape(3, 4, 8).sum(-1), 1.0, rtol=1e-6)
    black = intensity_histogram_features(np.zeros((1, 28, 28), np.uint8), bins=8, grid=1)
    assert black.tolist() == [[1, 0, 0, 0, 0, 0, 0, 0]]


def test_edge_grid_and_pixels():
    image = np.zeros((1, 28, 28), np.uint8)
    image[:, :, 14:] = 255
    edges = edge_grid_features(image, grid=7).reshape(7, 7)
    assert np.all(edges[:, 3] > 0) and np.all(edges[:, 0] == 0) and np.all(edges[:, 6] == 0)
    pixels = pixel_features(image, size=2)
    assert pixels.tolist() == [[0.0, 1.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="pixels size=5 must divide the 28x28 image"):
        pixel_features(image, size=5)


def test_extract_features_concatenates_in_order():
    config = get_config().classic
    config.features = ("pixels", "intensity_histogram")
    images = np.random.default_rng(1).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    x = extract_features(images, config)
    np.testing.assert_array_equal(x[:, :196], pixel_features(images, 14))
    np.testing.assert_array_equal(x[:, 196:], intensity_histogram_features(images, 16, 2))
