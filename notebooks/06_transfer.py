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
# # 6. Transfer learning with a frozen backbone
#
# Seed 003: take a network trained on a big data set, drop its top, freeze it, and train only a new head on
# a small data set. `configs/resnet50_transfer.py` does it on an image folder (one sub-folder per class) with
# a torchvision ResNet-50 `.pth` as the backbone (`--config.init_from=...`). Here it runs at notebook size:
# a tiny image folder cut from scikit-image's photographs, small images, and — since nothing is downloaded —
# a randomly initialised backbone. What matters is what freezing does: the backbone's parameters and its
# BatchNorm statistics come out of training bit for bit unchanged, only the head moves.

# %%
import os
import tempfile

import jax
import numpy as np
from PIL import Image
from skimage import data

from cnnjax.data import load_image
from cnnjax.plots import new_figure, plot_image_grid
from cnnjax.training import train_and_evaluate
from cnnjax.training.report import restore_run
from cnnjax.training.train import build_model, create_train_state
from configs.resnet50_transfer import get_config

# %% tags=["parameters"]
SMOKE = os.environ.get("CNNJAX_NOTEBOOK_SMOKE") == "1"  # the test suite sets it
# Full notebook: ResNet-50 on 64x64 crops (the configuration's model, a few minutes on 2 CPU cores). Smoke: the
# small CIFAR ResNet-20 backbone on 32x32 crops (seconds), the same code path.
BACKBONE = "resnet20" if SMOKE else "resnet50"
SIDE = 32 if SMOKE else 64
PER_CLASS = 24 if SMOKE else 60
EPOCHS = 2
OUTPUT = os.environ.get("CNNJAX_NOTEBOOK_OUTPUT") or tempfile.mkdtemp(prefix="cnnjax_nb06_")

# %% [markdown]
# ## A small image folder
# Random square crops (random position and size) of three photographs, one class each.

# %%
photos = {"astronaut": data.astronaut(), "cat": data.chelsea(), "coffee": data.coffee()}
root = os.path.join(OUTPUT, "photos")
rng = np.random.default_rng(0)
for name, photo in photos.items():
    os.makedirs(os.path.join(root, name), exist_ok=True)
    h, w = photo.shape[:2]
    for i in range(PER_CLASS):
        side = int(rng.integers(min(h, w) // 3, min(h, w) // 1.5))
        top, left = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
        crop = Image.fromarray(photo[top:top + side, left:left + side]).resize((SIDE, SIDE), Image.BILINEAR)
        crop.save(os.path.join(root, name, f"{i:03d}.png"))
examples = [load_image(os.path.join(root, name, f"{i:03d}.png"), None) for name in photos for i in range(4)]
plot_image_grid(examples, [name for name in photos for _ in range(4)], ncols=12, size=1.2)

# %% [markdown]
# ## Train the head only
# The config freezes `params['backbone']` (`config.frozen = ("backbone",)`: the optimizer gives it zero
# updates) and runs the backbone's BatchNorm in inference mode (`freeze_backbone_bn`).

# %%
config = get_config(root)
config.model.kwargs.backbone = BACKBONE
config.dataset.target_size = (SIDE, SIDE)
config.num_epochs = EPOCHS
config.batch_size = 16
config.eval_batch_size = 16
config.augment.rotation_degrees = 0.0
config.augment.zoom = (1.0, 1.0)
config.progress_bar = config.tensorboard = False
print("frozen:", config.frozen, " backbone:", BACKBONE, " init_from:", config.init_from or "(random backbone)")
workdir = os.path.join(OUTPUT, "transfer")
summary = train_and_evaluate(config, workdir)
print(f"test accuracy {summary['test_accuracy']:.3f} on {summary['test_count']} held-out crops "
      f"({len(photos)} classes, chance {1 / len(photos):.3f})")

# %% [markdown]
# ## What freezing did to the parameters
# The initial parameters are rebuilt from the config's seed (as the run built them) and compared with the
# trained checkpoint.

# %%
run = restore_run(workdir)
model = build_model(run.config, run.dataset.num_classes)
initial = create_train_state(run.config, model, tuple(run.dataset.image_shape), total_steps=1)
trained = run.variables
changes = {}
for collection in ("params", "batch_stats"):
    for part in trained.get(collection, {}):
        before = jax.tree_util.tree_leaves(getattr(initial, collection)[part])
        after = jax.tree_util.tree_leaves(trained[collection][part])
        size = sum(a.size for a in after)
        diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(after, before))
        changes[f"{collection}/{part}"] = (size, diff)
        print(f"{collection + '/' + part:24s} {size:>10,d} values   max |trained - initial| = {diff:.3g}")
assert changes["params/backbone"][1] == 0.0, "a frozen backbone parameter changed"
assert changes.get("batch_stats/backbone", (0, 0.0))[1] == 0.0, "the frozen backbone's BatchNorm statistics changed"
assert changes["params/head"][1] > 0.0, "the head did not train"

# %%
names = list(changes)
fig = new_figure(figsize=(7, 2.6))
ax = fig.subplots()
ax.barh(names, [max(changes[n][1], 1e-12) for n in names], color=["tab:gray" if "backbone" in n else "tab:orange"
                                                                  for n in names])
ax.set_xscale("log")
ax.set_xlabel("max |trained - initial| (1e-12 drawn for exactly 0)")
ax.invert_yaxis()
fig
