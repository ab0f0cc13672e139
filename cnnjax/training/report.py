"""Pictures of a finished run: learning curves, confusion matrix, the most confused test images, filters.

Everything reads what ``train_and_evaluate`` left in the workdir (``config.json``, ``metrics.jsonl``,
``checkpoints/``) and draws on plain ``matplotlib.figure.Figure`` objects (no pyplot, no global backend), so
the same functions serve ``python -m experiments.report`` (PNG files) and the notebooks (inline figures).
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from matplotlib.figure import Figure

from cnnjax.data.pipeline import steps_per_epoch
from cnnjax.data.sources import Dataset, get_dataset, materialize
from cnnjax.plots import new_figure, plot_image_grid
from cnnjax.training.checkpoint import Checkpoints, abstract_tree, latest_dir
from cnnjax.training.metrics import read_metrics
from cnnjax.training.steps import preprocess
from cnnjax.training.train import build_model, checkpoint_identity, create_train_state, trainable_mask_for

REPORT_FILES = ("learning_curves.png", "confusion_matrix.png", "most_confused.png")


def check_run_dir(workdir: str, need_checkpoints: bool = False) -> str:
    """``workdir`` as an absolute path if it holds a run (``config.json`` and ``metrics.jsonl``); else a
    one-line ``FileNotFoundError`` saying what is missing."""
    workdir = os.path.abspath(str(workdir))
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"workdir={workdir!r} does not exist; give the --workdir of a run of experiments.run")
    for name in ("config.json", "metrics.jsonl"):
        if not os.path.exists(os.path.join(workdir, name)):
            raise FileNotFoundError(f"workdir={workdir!r} has no {name}: it is not the workdir of a run "
                                    "(python -m experiments.run --config=NAME --workdir=DIR writes one)")
    if need_checkpoints and not os.path.isdir(latest_dir(workdir)):
        raise FileNotFoundError(f"workdir={workdir!r} has no checkpoints/latest: a confusion matrix needs the "
                                "trained weights of a CNN run")
    return workdir


def _tuples(value):
    """JSON lists back to the tuples a config had (model kwargs such as ``widths=(32, 64)``)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run recorded in ``workdir/config.json``."""
    with open(os.path.join(check_run_dir(workdir), "config.json")) as f:
        return ml_collections.ConfigDict(_tuples(json.load(f)))


# ---------------------------------------------------------------------------------------------- learning curves


def learning_curves(records: list[dict]) -> dict[str, dict[str, np.ndarray]]:
    """``{split: {"epoch", "step", "loss", "accuracy"}}`` arrays from ``metrics.jsonl`` records, in step order.

    ``train`` and ``validation`` have one record per epoch; ``test`` one at the end (its epoch is the last
    training epoch).
    """
    last_epoch = max((r.get("epoch", 0) for r in records), default=0)
    out: dict[str, dict[str, list]] = {}
    for r in sorted(records, key=lambda r: r["step"]):
        split = out.setdefault(r["split"], {"epoch": [], "step": [], "loss": [], "accuracy": []})
        split["epoch"].append(r.get("epoch", last_epoch))
        split["step"].append(r["step"])
        split["loss"].append(r.get("loss", np.nan))
        split["accuracy"].append(r.get("accuracy", np.nan))
    return {s: {k: np.asarray(v, float) for k, v in d.items()} for s, d in out.items()}


def plot_learning_curves(records: list[dict], title: str = "") -> Figure:
    """Loss and accuracy per epoch (train, validation if any, the final test point)."""
    curves = learning_curves(records)
    fig = new_figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    styles = {"train": dict(marker="o"), "validation": dict(marker="s"), "test": dict(marker="*", markersize=14,
                                                                                      linestyle="none")}
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for split, c in curves.items():
            if np.all(np.isnan(c[metric])):
                continue
            label = split if split != "test" else f"test ({c[metric][-1]:.4f})"
            ax.plot(c["epoch"], c[metric], label=label, **styles.get(split, {}))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------------------------- trained model


class RestoredRun(NamedTuple):
    """A run's config, data set, model and the variables of its checkpoint at ``step``."""

    config: ml_collections.ConfigDict
    dataset: Dataset
    model: object
    variables: dict
    step: int


def restore_run(workdir: str) -> RestoredRun:
    """Rebuild the model of a run from ``config.json`` and restore its newest checkpoint (the last epoch's
    weights: the ones ``summary.json``'s test accuracy was measured with; the EMA weights when the run
    evaluated with them)."""
    workdir = check_run_dir(workdir, need_checkpoints=True)
    config = load_config(workdir)
    dataset = get_dataset(config.dataset)
    model = build_model(config, dataset.num_classes)
    image_shape = tuple(dataset.image_shape)
    steps = steps_per_epoch(len(dataset.train), int(config.batch_size))
    state = create_train_state(config, model, image_shape, steps * int(config.num_epochs), steps,
                               trainable_mask_for(config, model, image_shape))
    checkpoints = Checkpoints(workdir, keep=int(config.get("checkpoint_keep", 2)))
    try:
        restored = checkpoints.restore_latest(abstract_tree(state.checkpoint_tree()),
                                              checkpoint_identity(config, state, image_shape, dataset.num_classes))
    finally:
        checkpoints.close()
    if restored is None:
        raise FileNotFoundError(f"workdir={workdir!r} has no readable checkpoint in checkpoints/latest")
    state = state.from_checkpoint_tree(restored[0])
    variables = state.variables(use_ema=bool(config.get("eval_with_ema", False)))
    return RestoredRun(config, dataset, model, variables, int(state.step))


def predict(model, variables, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Softmax probabilities ``(N, classes)`` of uint8 NHWC ``images`` (scaled as in the eval step)."""
    apply = jax.jit(lambda v, x: jax.nn.softmax(model.apply(v, preprocess(x), train=False)))
    out = [np.asarray(apply(variables, images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def source_arrays(source) -> tuple[np.ndarray, np.ndarray]:
    """All images ``(N, H, W, C)`` uint8 and labels ``(N,)`` of a random-access source."""
    arrays = materialize(source)
    return arrays.images, arrays.labels


# ---------------------------------------------------------------------------------------------- confusion


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of examples of true class ``i`` predicted as ``j``."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(labels), np.asarray(predictions)), 1)
    return cm


def plot_confusion_matrix(cm: np.ndarray, class_names, title: str = "") -> Figure:
    """The confusion matrix as a heat map, rows normalised to the fraction of each true class, counts written."""
    k = len(cm)
    fractions = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = new_figure(figsize=(0.6 * k + 3, 0.6 * k + 2))
    ax = fig.subplots()
    im = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if fractions[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title((title + "\n" if title else "") + f"accuracy {accuracy:.4f} on {cm.sum()} images")
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    return fig


def most_confused(probabilities: np.ndarray, labels: np.ndarray, n: int = 16) -> np.ndarray:
    """Indices of the ``n`` misclassified examples predicted most confidently (largest ``max_k p_k``)."""
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    order = np.argsort(-probabilities[wrong].max(axis=1), kind="stable")
    return wrong[order[:n]]


def plot_most_confused(images, probabilities, labels, class_names, n: int = 16) -> Figure:
    """The ``n`` most confidently misclassified images, titled ``true -> predicted (p)``."""
    idx = most_confused(probabilities, labels, n)
    titles = [f"{class_names[labels[i]]}\n-> {class_names[probabilities[i].argmax()]} "
              f"({probabilities[i].max():.2f})" for i in idx]
    return plot_image_grid(list(images[idx]), titles, ncols=8, title=f"most confidently wrong ({len(idx)} of "
                           f"{int((probabilities.argmax(1) != labels).sum())} errors)")


def plot_filters(kernel, title: str = "") -> Figure:
    """The filters of a conv kernel ``(kh, kw, C_in, C_out)``: one image per (output, input) channel pair,
    blue negative, red positive."""
    kernel = np.asarray(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"kernel.shape={kernel.shape} must be (kh, kw, C_in, C_out)")
    kh, kw, c_in, c_out = kernel.shape
    tiles = kernel.transpose(3, 2, 0, 1).reshape(c_out * c_in, kh, kw)
    titles = [f"out {o}" + (f" in {i}" if c_in > 1 else "") for o in range(c_out) for i in range(c_in)]
    return plot_image_grid(tiles, titles, ncols=min(8, len(tiles)), symmetric=True, title=title)


# ---------------------------------------------------------------------------------------------- the report


def write_report(workdir: str, out_dir: str | None = None, num_confused: int = 16) -> list[str]:
    """Write ``learning_curves.png``, ``confusion_matrix.png`` and ``most_confused.png`` of the run in
    ``workdir`` into ``out_dir`` (default: the workdir); return the paths written."""
    workdir = check_run_dir(workdir, need_checkpoints=True)
    out_dir = os.path.abspath(out_dir or workdir)
    os.makedirs(out_dir, exist_ok=True)
    name = os.path.basename(workdir)
    run = restore_run(workdir)
    images, labels = source_arrays(run.dataset.test)
    probabilities = predict(run.model, run.variables, images)
    cm = confusion_matrix(labels, probabilities.argmax(1), run.dataset.num_classes)
    figures = {
        "learning_curves.png": plot_learning_curves(read_metrics(workdir), f"{name}: {run.config.model.name}"),
        "confusion_matrix.png": plot_confusion_matrix(cm, run.dataset.class_names,
                                                      f"{name}: test set, step {run.step}"),
        "most_confused.png": plot_most_confused(images, probabilities, labels, run.dataset.class_names,
                                                num_confused),
    }
    paths = []
    for filename, fig in figures.items():
        path = os.path.join(out_dir, filename)
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths
