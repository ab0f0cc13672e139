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
# # 1. Images as tensors and classic kernels
#
# Seeds 000, 001 and 003: a picture is an array of numbers — `(H, W)` for grayscale, `(H, W, 3)` for colour —
# and a 3x3 kernel slid over it (cross-correlation, no flip) finds edges, blurs or sharpens. Everything below
# uses `cnnjax.ops` (`filter_image`, `kernels`, `pad`, `conv`, `arithmetic.output_size`) on scikit-image's
# sample photographs (no download).

# %%
import os

import numpy as np
from skimage import color, data, transform

from cnnjax import ops
from cnnjax.ops import arithmetic, kernels
from cnnjax.plots import plot_image_grid, plot_kernel_gallery

# %% tags=["parameters"]
SMOKE = os.environ.get("CNNJAX_NOTEBOOK_SMOKE") == "1"  # the test suite sets it: smaller pictures
SIZE = 128 if SMOKE else 512  # side of the grayscale photograph (the full notebook uses the original 512)

# %%
camera = data.camera()  # uint8 grayscale
if SIZE != camera.shape[0]:
    camera = (transform.resize(camera, (SIZE, SIZE), anti_aliasing=True) * 255).astype(np.uint8)
astronaut = data.astronaut()  # uint8 RGB
print("camera   ", camera.shape, camera.dtype, camera.min(), camera.max())
print("astronaut", astronaut.shape, astronaut.dtype)
print("top-left 4x4 pixels of the camera:\n", camera[:4, :4])

# %% [markdown]
# ## Scaling to [0, 1] and colour spaces
# A network sees `x / 255` (seed 000). RGB splits into three channels; HSV separates hue, saturation and value.

# %%
rgb = astronaut.astype(np.float32) / 255.0
hsv = color.rgb2hsv(rgb)
assert 0.0 <= rgb.min() and rgb.max() <= 1.0
plot_image_grid([rgb, rgb[..., 0], rgb[..., 1], rgb[..., 2], hsv[..., 0], hsv[..., 1], hsv[..., 2]],
                ["RGB", "R", "G", "B", "H (hue)", "S (saturation)", "V (value)"], ncols=7, size=2.0)

# %% [markdown]
# ## The classic kernels
# `cnnjax.ops.kernels` holds the lectures' 3x3 kernels; `filter_image` applies one to each channel with
# "SAME" size and edge padding. Edge kernels (their weights sum to 0) give signed maps: red positive, blue negative.

# %%
plot_kernel_gallery(camera)

# %%
plot_kernel_gallery(astronaut[::4, ::4] if SMOKE else astronaut, ("identity", "sharpen", "box_blur", "gaussian_blur",
                                                                  "laplacian8"))

# %% [markdown]
# Gradient magnitude from the two Sobel kernels, `sqrt(G_x^2 + G_y^2)`: the edge map HOG is built on.

# %%
gx, gy = ops.filter_image(camera, "sobel_x"), ops.filter_image(camera, "sobel_y")
magnitude = np.sqrt(np.asarray(gx) ** 2 + np.asarray(gy) ** 2)
plot_image_grid([np.asarray(gx), np.asarray(gy), magnitude], ["G_x (vertical edges)", "G_y (horizontal edges)",
                                                              "|G|"], ncols=3, size=3.2, symmetric=False)

# %% [markdown]
# ## Padding modes
# `ops.pad` fills the border of an `(N, H, W, C)` array: zeros ("constant"), the nearest pixel ("edge"),
# a mirror ("reflect") or the other side ("wrap").

# %%
tile = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
padded = {mode: np.asarray(ops.pad(tile, [(2, 2), (2, 2)], mode=mode))[0, ..., 0]
          for mode in ("constant", "edge", "reflect", "wrap")}
for mode, p in padded.items():
    print(mode, "\n", p.astype(int))
plot_image_grid(list(padded.values()), list(padded), ncols=4, size=2.2, cmap="viridis")

# %% [markdown]
# ## Stride and the output-size formula
# `H_out = floor((H_in - M + 2P) / S) + 1` (seed 000). `arithmetic.output_size` computes it; below it is checked
# against the shape `ops.conv` really returns for several kernels, paddings and strides.

# %%
x = camera[None, :, :, None].astype(np.float32) / 255.0
h_in = x.shape[1]
rows = []
for m, p, s in [(3, 0, 1), (3, 1, 1), (5, 2, 1), (3, 1, 2), (5, 0, 2), (7, 3, 4)]:
    predicted = arithmetic.output_size(h_in, m, stride=s, padding=p)
    actual = ops.conv(x, np.ones((m, m, 1, 1), np.float32) / m**2, stride=s, padding=p).shape[1]
    assert predicted == actual == (h_in - m + 2 * p) // s + 1
    rows.append((m, p, s, predicted))
print(f"H_in = {h_in}\n  M  P  S  H_out")
for r in rows:
    print("  %d  %d  %d  %d" % r)

# %% [markdown]
# A stride of 2 keeps every second output: the same blur, a quarter of the pixels.

# %%
blur = np.asarray(kernels.gaussian_blur())[:, :, None, None]
outs = [np.asarray(ops.conv(x, blur, stride=s, padding=1))[0, ..., 0] for s in (1, 2, 4)]
plot_image_grid(outs, [f"stride {s}: {o.shape[0]}x{o.shape[1]}" for s, o in zip((1, 2, 4), outs)], ncols=3,
                size=3.0)
