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
# # 4. Deformable convolution
#
# Seed 004 (Dai et al. 2017): every tap `(i, j)` of a `k x k` kernel at every output position gets its own
# offset `(dy, dx)`; the input is read there by bilinear interpolation. `cnnjax.ops.deform_conv2d` computes
# it; `get_model(..., conv="deformable")` puts it into a network, where a small ordinary convolution
# predicts the offsets from the input. Below: the sampling grid drawn over a photograph, a check that the
# right offsets turn a 3x3 kernel into a dilated one, and the offsets a small trained LeNet-5 learned.

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from skimage import data, transform

from cnnjax import ops
from cnnjax.plots import new_figure
from cnnjax.training import train_and_evaluate
from cnnjax.training.report import restore_run, source_arrays
from configs.lenet import get_config

# %% tags=["parameters"]
SMOKE = os.environ.get("CNNJAX_NOTEBOOK_SMOKE") == "1"  # the test suite sets it
# Training of the deformable LeNet-5: the full notebook uses 20,000 images and 3 epochs (a few minutes on 2 CPU
# cores); the smoke run 1,024 images and 1 epoch (its offsets have barely moved from zero).
TRAIN_LIMIT = 1024 if SMOKE else 20000
EPOCHS = 1 if SMOKE else 3
OUTPUT = os.environ.get("CNNJAX_NOTEBOOK_OUTPUT") or tempfile.mkdtemp(prefix="cnnjax_nb04_")

# %% [markdown]
# ## The sampling grid over an image
# A 3x3 kernel at output position `p` reads `p + (i - 1, j - 1)` (regular grid, black). With offsets, it
# reads `p + (i - 1, j - 1) + (dy, dx)` (coloured): here offsets that stretch the grid by 3x at one place and
# random ones at another.

# %%
photo = transform.resize(data.chelsea(), (120, 160), anti_aliasing=True)
taps = np.array([(i - 1, j - 1) for i in range(3) for j in range(3)], float)  # (9, 2): (dy, dx) of each tap
centres = {"stretched x3": np.array([55.0, 50.0]), "random": np.array([60.0, 115.0])}
offsets = {"stretched x3": 2.0 * taps, "random": np.random.default_rng(0).normal(0, 2.5, (9, 2))}
fig = new_figure(figsize=(6, 4.5))
ax = fig.subplots()
ax.imshow(photo)
for (name, c), colour in zip(centres.items(), ("tab:red", "tab:cyan")):
    regular, moved = c + taps, c + taps + offsets[name]
    ax.scatter(regular[:, 1], regular[:, 0], c="black", s=18)
    ax.scatter(moved[:, 1], moved[:, 0], c=colour, s=22, label=name)
    for a, b in zip(regular, moved):
        ax.annotate("", xy=(b[1], b[0]), xytext=(a[1], a[0]), arrowprops=dict(arrowstyle="->", color=colour, lw=0.8))
ax.legend(loc="lower right")
ax.axis("off")
fig

# %% [markdown]
# ## Offsets that make a dilated convolution
# Tap `(i, j)` of a dilation-2 kernel reads `2 (i - 1, j - 1)` away from the centre, i.e. an offset of
# `(i - 1, j - 1)` on top of the regular grid. With that offset at every position, `deform_conv2d` equals
# `conv(..., dilation=2)` (integer offsets: no interpolation).

# %%
gray = jnp.asarray(transform.resize(data.camera(), (64, 64), anti_aliasing=True)[None, :, :, None], jnp.float32)
kernel = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3, 1, 4)), jnp.float32)
field = jnp.broadcast_to(jnp.asarray(taps.reshape(-1), jnp.float32), (1, 64, 64, 18))  # the same at every position
# padding 1 (3x3 grid) vs padding 2 (the 5x5 span of the dilated kernel): both read p + 2 (i - 1), zeros outside
deformed = ops.deform_conv2d(gray, field, kernel, padding=1)
dilated = ops.conv(gray, kernel, dilation=2, padding=2)
print(deformed.shape, dilated.shape, "max difference", float(jnp.max(jnp.abs(deformed - dilated))))
np.testing.assert_allclose(deformed, dilated, atol=1e-4)

# %% [markdown]
# ## What a trained LeNet-5 learned
# LeNet-5 with a deformable second convolution (5x5, 6 -> 16 maps) trained on Fashion-MNIST. Its offsets
# (one `(dy, dx)` per tap and output position, predicted from the input) are read back with Flax's
# `capture_intermediates` from the sub-module that predicts them.

# %%
config = get_config("runlocal" if SMOKE else None)  # the LeNet-5 recipe (runlocal: no warm-up epoch)
config.model.kwargs.conv = "deformable"
config.num_epochs = EPOCHS
config.dataset.train_limit = TRAIN_LIMIT
config.dataset.test_limit = 500
config.progress_bar = config.tensorboard = False
workdir = os.path.join(OUTPUT, "deformable_lenet")
summary = train_and_evaluate(config, workdir)
print(f"test accuracy {summary['test_accuracy']:.4f} after {summary['steps']} steps")

# %%
run = restore_run(workdir)
images, labels = source_arrays(run.dataset.test)
batch = jnp.asarray(images[:8], jnp.float32) / 255.0
_, state = run.model.apply(run.variables, batch, train=False,
                           capture_intermediates=lambda module, method: "offset" in (module.name or ""))
found = [v for path, v in jax.tree_util.tree_flatten_with_path(state["intermediates"])[0]
         if "offset" in jax.tree_util.keystr(path)]
assert found, "no offset-predicting sub-module found in the deformable model"
predicted = np.asarray(found[0])  # (N, H_out, W_out, k*k*2 [, + k*k mask logits for v2])
k = int(round(np.sqrt(predicted.shape[-1] / 2)))
learned = predicted[..., : k * k * 2].reshape(*predicted.shape[:3], k * k, 2)
print("offset field", learned.shape, f"(kernel {k}x{k});  mean |offset| = {np.abs(learned).mean():.3f} px, "
      f"max = {np.abs(learned).max():.3f} px")

# %% [markdown]
# The sampling points of the 5x5 kernel at three output positions of the first test image, drawn in the
# 28x28 image (the layer works on the 14x14 maps after the first pooling, so one step there is 2 pixels here;
# arrows are scaled so that small offsets stay visible).

# %%
scale = 1.0 / max(float(np.abs(learned[0]).max()), 1e-6)  # longest arrow = one step of the grid
grid = np.array([(i - k // 2, j - k // 2) for i in range(k) for j in range(k)], float)
fig = new_figure(figsize=(9, 3.4))
axes = fig.subplots(1, 3)
for ax, (r, c) in zip(axes, [(2, 2), (5, 5), (7, 3)]):
    ax.imshow(images[0, ..., 0], cmap="gray")
    centre = np.array([r + k // 2, c + k // 2], float)  # VALID conv on the 14x14 map
    regular = centre + grid
    moved = regular + scale * learned[0, r, c]
    to_img = lambda p: 2 * p + 0.5  # noqa: E731  (14x14 map -> 28x28 image coordinates)
    ax.scatter(to_img(regular[:, 1]), to_img(regular[:, 0]), c="yellow", s=10)
    ax.quiver(to_img(regular[:, 1]), to_img(regular[:, 0]), 2 * (moved - regular)[:, 1], -2 * (moved - regular)[:, 0],
              color="red", angles="xy", scale_units="xy", scale=1, width=0.01)
    ax.set_title(f"output ({r}, {c}); arrows x{scale:.2g}", fontsize=8)
    ax.axis("off")
fig
