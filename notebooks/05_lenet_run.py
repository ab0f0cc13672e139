# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. Training LeNet-5 on Fashion-MNIST and reading the run
#
# Everything here is read from a run's workdir — `config.json`, `metrics.jsonl` and the checkpoints that
# `python -m experiments.run` writes — with the functions `python -m experiments.report` uses
# (`cnnjax.training.report`). Give the workdir of a finished run in `WORKDIR`; without one the notebook
# trains a short run itself.

# %%
import os
import tempfile

import jax
import numpy as np

from cnnjax.plots import plot_image_grid
from cnnjax.training import train_and_evaluate
from cnnjax.training.metrics import read_metrics
from cnnjax.training.report import (
    confusion_matrix,
    plot_confusion_matrix,
    plot_filters,
    plot_learning_curves,
    plot_most_confused,
    predict,
    restore_run,
    source_arrays,
)
from configs.lenet import get_config

# %% tags=["parameters"]
# The full recipe (30 epochs, ~2 minutes on 2 CPU cores; README quotes its accuracy):
#   python -m experiments.run --config=lenet --workdir=runs/lenet
# then set WORKDIR = "../runs/lenet" (paths are relative to notebooks/) or CNNJAX_LENET_WORKDIR.
WORKDIR = os.environ.get("CNNJAX_LENET_WORKDIR", "")
SMOKE = os.environ.get("CNNJAX_NOTEBOOK_SMOKE") == "1"  # the test suite sets it
OUTPUT = os.environ.get("CNNJAX_NOTEBOOK_OUTPUT") or tempfile.mkdtemp(prefix="cnnjax_nb05_")

# %%
if not WORKDIR:  # no finished run given: train a short one (smoke: 2,048 images, 1 epoch; else 5 epochs, all)
    config = get_config("runlocal" if SMOKE else None)
    if not SMOKE:
        config.num_epochs = 5
    config.dataset.validation_size = 0 if SMOKE else 5000
    config.progress_bar = config.tensorboard = False
    WORKDIR = os.path.join(OUTPUT, "lenet")
    train_and_evaluate(config, WORKDIR)
print("reading", os.path.abspath(WORKDIR))

# %% [markdown]
# ## Learning curves

# %%
records = read_metrics(WORKDIR)
plot_learning_curves(records, "LeNet-5 on Fashion-MNIST")

# %% [markdown]
# ## Confusion matrix and the most confused test images
# The newest checkpoint is restored (with the weight average if the run evaluated with it) and the test set
# goes through it: the accuracy here is the run's test accuracy.

# %%
run = restore_run(WORKDIR)
images, labels = source_arrays(run.dataset.test)
probabilities = predict(run.model, run.variables, images)
cm = confusion_matrix(labels, probabilities.argmax(1), run.dataset.num_classes)
plot_confusion_matrix(cm, run.dataset.class_names, f"step {run.step}")

# %%
pairs = [(cm[i, j], run.dataset.class_names[i], run.dataset.class_names[j])
         for i in range(len(cm)) for j in range(len(cm)) if i != j]
for count, true, pred in sorted(pairs, reverse=True)[:5]:
    print(f"{count:5d}  {true:12s} -> {pred}")

# %%
plot_most_confused(images, probabilities, labels, run.dataset.class_names, n=16)

# %% [markdown]
# ## Learned first-layer filters and their feature maps
# The first convolution's kernel is the 4-D parameter that reads the image's single channel; its feature maps
# are the outputs of the first 28x28 multi-channel layer, captured with Flax's `capture_intermediates`.

# %%
kernels = [leaf for leaf in jax.tree_util.tree_leaves(run.variables["params"])
           if leaf.ndim == 4 and leaf.shape[2] == images.shape[-1]]
first = np.asarray(kernels[0])
print("first-layer kernel", first.shape)
plot_filters(first, "first-layer filters (red positive, blue negative)")

# %%
example = images[:1].astype(np.float32) / 255.0
_, state = run.model.apply(run.variables, example, train=False, capture_intermediates=True)
maps = [np.asarray(v) for v in jax.tree_util.tree_leaves(state["intermediates"])
        if v.ndim == 4 and v.shape[1:3] == images.shape[1:3] and v.shape[-1] == first.shape[-1]]
feature_maps = np.maximum(maps[0][0], 0.0)  # after the ReLU
plot_image_grid([images[0, ..., 0]] + [feature_maps[..., c] for c in range(feature_maps.shape[-1])],
                [run.dataset.class_names[labels[0]]] + [f"map {c}" for c in range(feature_maps.shape[-1])],
                ncols=7, size=1.8, cmap="viridis")
