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
# # 3. Back-propagation through convolution and pooling
#
# Seeds 001 and 002: for `Y = X * F` (cross-correlation, VALID) and a loss `L` with upstream gradient
# `dL/dY`,
#
# - the gradient for the kernel is the cross-correlation of the input with the upstream gradient:
#   `dL/dF[u, v] = sum_ij X[i + u, j + v] dL/dY[i, j]`;
# - the gradient for the input is the **full** convolution of `dL/dY` with the kernel rotated by 180°:
#   `dL/dX = pad_full(dL/dY) * rot180(F)`.
#
# Below JAX's autodiff through `cnnjax.ops.conv` is checked against both formulas on a real photograph, and
# max pooling is shown to route the gradient to the arg-max of each window only.

# %%
import jax
import jax.numpy as jnp
import numpy as np
from skimage import data, transform

from cnnjax import ops
from cnnjax.plots import plot_image_grid

# %% tags=["parameters"]
SIZE = 64  # side of the photograph crop (small: the formulas do not depend on it)
KSIZE = 5

# %%
image = transform.resize(data.camera(), (SIZE, SIZE), anti_aliasing=True).astype(np.float32)
rng = np.random.default_rng(0)
x = jnp.asarray(image[None, :, :, None])
f = jnp.asarray(rng.normal(size=(KSIZE, KSIZE, 1, 1)), jnp.float32)
out = SIZE - KSIZE + 1
g = jnp.asarray(rng.normal(size=(1, out, out, 1)), jnp.float32)  # an upstream gradient dL/dY


def loss(x, f):
    """L = sum(Y * g): its gradient with respect to Y is exactly g."""
    return jnp.sum(ops.conv(x, f) * g)


dx_auto, df_auto = jax.grad(loss, argnums=(0, 1))(x, f)

# %% [markdown]
# ## Input gradient: full convolution with the rotated kernel

# %%
rot180 = f[::-1, ::-1]
dx_formula = ops.conv(g, rot180, padding="FULL")  # FULL pads K - 1 on each side
print("shapes:", dx_auto.shape, dx_formula.shape)
print("max |autodiff - formula| =", float(jnp.max(jnp.abs(dx_auto - dx_formula))))
np.testing.assert_allclose(dx_auto, dx_formula, rtol=1e-4, atol=1e-4)
plot_image_grid([image, np.asarray(g[0, ..., 0]), np.asarray(dx_auto[0, ..., 0]), np.asarray(dx_formula[0, ..., 0])],
                ["input X", "upstream dL/dY", "dL/dX by autodiff", "full conv(dL/dY, rot180 F)"], ncols=4, size=2.8)

# %% [markdown]
# ## Kernel gradient: the input cross-correlated with the upstream gradient
# Treat the image as a one-example batch and `dL/dY` as a kernel: `ops.conv(X, dL/dY)` gives a `K x K` map.

# %%
df_formula = ops.conv(x, jnp.transpose(g, (1, 2, 0, 3)))  # dL/dY as an (out, out, 1, 1) kernel
print("max |autodiff - formula| =", float(jnp.max(jnp.abs(df_auto[..., 0, 0] - df_formula[0, ..., 0]))))
np.testing.assert_allclose(df_auto[..., 0, 0], df_formula[0, ..., 0], rtol=1e-4, atol=1e-3)
plot_image_grid([np.asarray(df_auto[..., 0, 0]), np.asarray(df_formula[0, ..., 0])],
                ["dL/dF by autodiff", "X * dL/dY"], ncols=2, size=2.6, symmetric=True)

# %% [markdown]
# ## The same in 1-D, by hand (seed 002's worked example)
# `y = x * w` with `x` of length 5 and `w` of length 3: `dL/dx = full(dL/dy) * reversed(w)`.

# %%
x1 = jnp.arange(1.0, 6.0)[None, :, None]
w1 = jnp.array([1.0, 2.0, -1.0])[:, None, None]
g1 = jnp.array([1.0, 0.5, -1.0])[None, :, None]
dx1 = jax.grad(lambda x: jnp.sum(ops.conv(x, w1) * g1))(x1)[0, :, 0]
by_hand = np.convolve(np.asarray(g1[0, :, 0]), np.asarray(w1[:, 0, 0]))  # np.convolve flips: full conv with rot w
print("autodiff:", np.asarray(dx1), " full convolution by hand:", by_hand)
np.testing.assert_allclose(dx1, by_hand, rtol=1e-6)

# %% [markdown]
# ## Max pooling routes the gradient to the arg-max
# The gradient of `sum(max_pool(X) * G)` is `G[window]` at the largest cell of each window and zero
# elsewhere (seed 002); ties go to the first cell in row-major order, as in PyTorch.

# %%
x4 = jnp.asarray(rng.permutation(64).reshape(1, 8, 8, 1).astype(np.float32))
g4 = jnp.arange(1.0, 17.0).reshape(1, 4, 4, 1)
dx4 = jax.grad(lambda x: jnp.sum(ops.max_pool(x, 2) * g4))(x4)[0, ..., 0]
windows = np.asarray(x4[0, ..., 0]).reshape(4, 2, 4, 2).transpose(0, 2, 1, 3).reshape(4, 4, 4)
is_max = (windows == windows.max(-1, keepdims=True)).reshape(4, 4, 2, 2).transpose(0, 2, 1, 3).reshape(8, 8)
expected = np.where(is_max, np.kron(np.asarray(g4[0, ..., 0]), np.ones((2, 2))), 0.0)
np.testing.assert_array_equal(dx4, expected)
print("input:\n", np.asarray(x4[0, ..., 0]).astype(int))
print("gradient (upstream value at each window's maximum):\n", np.asarray(dx4).astype(int))
plot_image_grid([np.asarray(x4[0, ..., 0]), np.asarray(g4[0, ..., 0]), np.asarray(dx4)],
                ["X (8x8)", "upstream G (4x4)", "dL/dX: G at the arg-max"], ncols=3, size=2.6, cmap="viridis")

# %% [markdown]
# Average pooling, in contrast, spreads each upstream value evenly over its window (`G / 4` on every cell):

# %%
dx_avg = jax.grad(lambda x: jnp.sum(ops.avg_pool(x, 2) * g4))(x4)[0, ..., 0]
np.testing.assert_allclose(dx_avg, np.kron(np.asarray(g4[0, ..., 0]), np.ones((2, 2))) / 4)
print(np.asarray(dx_avg))
