"""``train_and_evaluate_classic(config, workdir)``: hand-made features + a scikit-learn classifier, run like a
CNN experiment (same data sets, ``config.json``, ``metrics.jsonl`` and ``summary.json`` in the workdir).

Data flow: ``config.dataset`` -> uint8 images -> ``extract_features`` (``config.classic``) -> standardised
features -> classifier ``fit`` on the training split -> accuracy on the test split.
"""

from __future__ import annotations

import os
import time

import numpy as np

from cnnjax.classic.features import check_features, extract_features
from cnnjax.data.sources import get_dataset, materialize
from cnnjax.training.metrics import MetricWriter, write_json
from cnnjax.training.train import prepare_workdir

CLASSIFIERS = ("linear_svm", "rbf_svm", "nystroem_svm")


def _positive(value, name: str, kind=(int, float)) -> None:
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        allowed = "an int" if kind is int else "a number"
        raise ValueError(f"classic.{name}={value!r} must be {allowed} > 0")


def check_classic_config(classic) -> None:
    """Validate ``config.classic`` before any data is read; a ValueError names the field and value."""
    check_features(classic.features)
    if classic.classifier not in CLASSIFIERS:
        raise ValueError(f"classic.classifier={classic.classifier!r} is unknown; allowed: {', '.join(CLASSIFIERS)}")
    _positive(classic.C, "C")
    for name in ("hog_orientations", "hog_pixels_per_cell", "hog_cells_per_block", "edge_grid", "histogram_bins",
                 "histogram_grid", "pixels_size", "n_components"):
        _positive(classic[name], name, int)
    gamma = classic.gamma
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma < 0:
        raise ValueError(f"classic.gamma={gamma!r} must be a number >= 0 (0: 1 / number of features)")
    pca = classic.pca_components
    if isinstance(pca, bool) or not isinstance(pca, int) or pca < 0:
        raise ValueError(f"classic.pca_components={pca!r} must be an int >= 0 (0: no PCA)")


def make_classifier(classic, num_features: int, seed: int = 0):
    """The scikit-learn pipeline named by ``classic.classifier``; every one starts with standardisation
    ``x' = (x - mean) / std`` (fitted on the training features), optionally followed by
    ``PCA(pca_components)``.

    - ``linear_svm``: ``LinearSVC(C)``, one-vs-rest linear SVMs.
    - ``rbf_svm``: ``SVC(C, kernel='rbf')``, one-vs-one, ``k(x, y) = exp(-gamma |x - y|^2)``.
    - ``nystroem_svm``: an approximate RBF kernel, ``Nystroem(n_components)`` features, then ``LinearSVC(C)``.

    ``gamma = classic.gamma / D`` for the ``D`` features entering the kernel (``num_features``, or
    ``pca_components`` after PCA); ``classic.gamma = 0`` is scikit-learn's ``'scale'``, ``1 / (D var(x))``
    (for ``nystroem_svm``: ``1 / D``, the same for standardised features without PCA).
    """
    from sklearn.decomposition import PCA
    from sklearn.kernel_approximation import Nystroem
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    steps = [StandardScaler()]
    dims = num_features
    if classic.pca_components:
        dims = min(int(classic.pca_components), num_features)
        steps.append(PCA(n_components=dims, random_state=seed))
    gamma = float(classic.gamma) / dims if classic.gamma else "scale"
    if classic.classifier == "linear_svm":
        steps.append(LinearSVC(C=float(classic.C), dual="auto", max_iter=5000, random_state=seed))
    elif classic.classifier == "rbf_svm":
        steps.append(SVC(C=float(classic.C), kernel="rbf", gamma=gamma, cache_size=1000, random_state=seed))
    else:
        if gamma == "scale":  # Nystroem has no 'scale': 1 / D, i.e. 'scale' for standardised features
            gamma = 1.0 / dims
        steps += [Nystroem(kernel="rbf", gamma=gamma, n_components=int(classic.n_components), random_state=seed),
                  LinearSVC(C=float(classic.C), dual="auto", max_iter=5000, random_state=seed)]
    return make_pipeline(*steps)


def train_and_evaluate_classic(config, workdir: str) -> dict:
    """Extract ``config.classic.features`` from ``config.dataset``, fit ``config.classic.classifier`` on the
    training split, score the test split; write ``config.json``, ``metrics.jsonl`` and ``summary.json``.

    Returns the summary: ``test_accuracy``, ``test_count``, ``train_count``, ``num_features``,
    ``wall_time_s`` (everything: reading, features, fitting, predicting), ``cpu_time_s`` (the same span in CPU
    seconds of this process), ``feature_time_s``, ``fit_time_s``,
    ``predict_time_s``, ``model``, ``classifier``, ``dataset``.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    check_classic_config(config.classic)
    dataset = get_dataset(config.dataset)  # a missing data set fails here, before the workdir is touched
    workdir = prepare_workdir(workdir)
    write_json(os.path.join(workdir, "config.json"), config.to_dict())
    train, test = materialize(dataset.train), materialize(dataset.test)
    train_images, train_labels, test_images, test_labels = train.images, train.labels, test.images, test.labels

    t0 = time.perf_counter()
    x_train = extract_features(train_images, config.classic)
    x_test = extract_features(test_images, config.classic)
    feature_time = time.perf_counter() - t0
    print(f"features: {x_train.shape[1]} per image ({', '.join(config.classic.features)}), "
          f"{len(x_train)} train + {len(x_test)} test images in {feature_time:.1f} s", flush=True)

    classifier = make_classifier(config.classic, x_train.shape[1], seed=int(config.seed))
    t0 = time.perf_counter()
    classifier.fit(x_train, train_labels)
    fit_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    predictions = classifier.predict(x_test)
    predict_time = time.perf_counter() - t0
    accuracy = float(np.mean(predictions == test_labels))
    train_accuracy = float(np.mean(classifier.predict(x_train) == train_labels))

    writer = MetricWriter(workdir, tensorboard=False)
    writer.write(0, "train", {"epoch": 1, "accuracy": train_accuracy})
    writer.write(0, "test", {"accuracy": accuracy, "count": len(test_labels)})
    writer.close()
    summary = {
        "test_accuracy": accuracy,
        "test_count": int(len(test_labels)),
        "train_accuracy": train_accuracy,
        "train_count": int(len(train_labels)),
        "num_features": int(x_train.shape[1]),
        "wall_time_s": time.perf_counter() - start,
        "cpu_time_s": time.process_time() - cpu_start,  # all threads of this process (its share of a busy machine)
        "feature_time_s": feature_time,
        "fit_time_s": fit_time,
        "predict_time_s": predict_time,
        "model": "hog_svm",
        "classifier": str(config.classic.classifier),
        "dataset": str(config.dataset.name),
    }
    write_json(os.path.join(workdir, "summary.json"), summary)
    print(f"test accuracy {accuracy:.4f} on {len(test_labels)} images ({config.classic.classifier} on "
          f"{x_train.shape[1]} features); {summary['wall_time_s']:.1f} s; summary in "
          f"{os.path.join(workdir, 'summary.json')}", flush=True)
    return summary

