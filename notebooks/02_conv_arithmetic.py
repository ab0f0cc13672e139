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
# # 2. Convolution variants and their arithmetic
#
# Seed 004 counts the parameters of a layer that maps `M` input maps to `K` output maps: dense `(n + 1) m`,
# k-local `(k^2 + 1) m^2`, convolution `(M p q + 1) K`, grouped convolution with the weights divided by `g`,
# depthwise-separable `p q M + (M + 1) K`. Below each count from `cnnjax.ops.arithmetic` is checked against
# the arrays the op itself accepts (running it proves the shapes), receptive fields are drawn from the
# gradient of one output pixel, and transposed convolution upsamples.

# %%
import jax
import jax.numpy as jnp
import numpy as np

from cnnjax import ops
from cnnjax.ops import arithmetic
from cnnjax.plots import new_figure, plot_image_grid

# %% tags=["parameters"]
H, M, K, KSIZE = 14, 16, 32, 3  # input 14x14x16 (LeNet-5's second stage), 32 output maps, 3x3 windows

# %% [markdown]
# ## Parameters of one layer, five ways

# %%
rng = np.random.default_rng(0)
x = jnp.asarray(rng.normal(size=(1, H, H, M)), jnp.float32)
out = arithmetic.output_size(H, KSIZE)  # VALID: 12


def size(*arrays):
    return int(sum(np.prod(a.shape) for a in arrays))


layers = {}
# dense: every input value to every output value (not run: 14x14x16 -> 12x12x32 is a 3136 x 4608 matrix)
layers["dense"] = (arithmetic.dense_params(H * H * M, out * out * K), None)
# locally connected (k-local): a different 3x3xM kernel at each output position
w, b = jnp.zeros((out, out, KSIZE, KSIZE, M, K)), jnp.zeros((out, out, K))
y = ops.locally_connected(x, w, b, kernel_size=KSIZE)
layers["locally connected"] = (arithmetic.locally_connected_params(M, K, KSIZE, out), size(w, b))
# convolution: one kernel shared over positions
w, b = jnp.zeros((KSIZE, KSIZE, M, K)), jnp.zeros((K,))
assert ops.conv(x, w, b).shape == y.shape
layers["conv"] = (arithmetic.conv_params(M, K, KSIZE), size(w, b))
# grouped: 4 groups, each output map sees M / 4 input maps
w = jnp.zeros((KSIZE, KSIZE, M // 4, K))
assert ops.conv(x, w, b, groups=4).shape == y.shape
layers["grouped (g=4)"] = (arithmetic.conv_params(M, K, KSIZE, groups=4), size(w, b))
# depthwise-separable: one 3x3 filter per input map, then a 1x1 conv mixing the maps
dw, pw = jnp.zeros((KSIZE, KSIZE, M, 1)), jnp.zeros((M, K))
assert ops.separable_conv(x, dw, pw, b).shape == y.shape
layers["depthwise-separable"] = (arithmetic.separable_params(M, K, KSIZE), size(dw, pw, b))

print(f"{H}x{H}x{M} -> {out}x{out}x{K}, {KSIZE}x{KSIZE} windows")
print(f"{'layer':22s} {'formula':>12s} {'op arrays':>12s}")
for name, (formula, arrays) in layers.items():
    assert arrays is None or formula == arrays, name
    print(f"{name:22s} {formula:12,d} {'' if arrays is None else f'{arrays:12,d}'}")

# %%
names = list(layers)
fig = new_figure(figsize=(7, 3))
ax = fig.subplots()
ax.barh(names, [layers[n][0] for n in names], color="tab:blue")
ax.set_xscale("log")
ax.set_xlabel("parameters (log scale)")
ax.invert_yaxis()
fig

# %% [markdown]
# Seed 004's 1-D example: `n = m = 100` cells, a k-local layer with `k = 3` has `(k + 1) m = 400` parameters,
# a dense one `(n + 1) m = 10,100`; in 2-D with `m x m` outputs the k-local layer has `(k^2 + 1) m^2`.

# %%
print("dense 1-D   ", arithmetic.dense_params(100, 100))
print("k-local 1-D ", arithmetic.k_local_params(3, 100))
print("k-local 2-D ", arithmetic.k_local_params(3, 100, ndim=2))
assert arithmetic.k_local_params(3, 100) == 400 and arithmetic.dense_params(100, 100) == 10_100

# %% [markdown]
# ## Receptive fields, drawn
# Which input pixels can change the centre pixel of the last layer's output? The gradient of that pixel with
# respect to the input answers it exactly: its non-zero region is the receptive field. The recurrence
# `r_l = r_{l-1} + D_l (M_l - 1) j_{l-1}`, `j_l = j_{l-1} S_l` (`arithmetic.receptive_field`) must give the
# same size.

# %%
SIDE = 33


def stack_output(x, layers):
    for kernel, stride, dilation in layers:
        x = ops.conv(x, jnp.ones((kernel, kernel, 1, 1)) / kernel**2, stride=stride, dilation=dilation)
    return x


stacks = {
    "3x3": [(3, 1, 1)],
    "3x3, 3x3": [(3, 1, 1), (3, 1, 1)],
    "3x3/2, 3x3": [(3, 2, 1), (3, 1, 1)],
    "3x3 dilated 1, 2, 4": [(3, 1, 1), (3, 1, 2), (3, 1, 4)],
}
maps, titles = [], []
for name, layers_ in stacks.items():
    def centre(x, layers_=layers_):
        y = stack_output(x, layers_)
        return y[0, y.shape[1] // 2, y.shape[2] // 2, 0]

    g = np.asarray(jax.grad(centre)(jnp.ones((1, SIDE, SIDE, 1))))[0, ..., 0]
    rows, cols = np.nonzero(g)
    drawn = rows.max() - rows.min() + 1
    predicted = arithmetic.receptive_field([(k, s, d) for k, s, d in layers_])[-1].size
    assert drawn == predicted == cols.max() - cols.min() + 1, (name, drawn, predicted)
    maps.append(g)
    titles.append(f"{name}\nreceptive field {predicted}x{predicted}")
plot_image_grid(maps, titles, ncols=4, size=2.8, cmap="magma")

# %% [markdown]
# The dilated stack sees 15x15 pixels with three 3x3 kernels, but only a sparse lattice of them for the
# first dilated layers alone (seed 001: atrous convolution).

# %% [markdown]
# ## Transposed convolution as upsampling
# `ops.conv_transpose` with stride 2 inserts a zero between input cells and convolves: with the bilinear
# 4x4 kernel it doubles the resolution, and it is the adjoint of the strided convolution
# (`<conv(y), x> = <y, conv_transpose(x)>`, checked below).

# %%
small = jnp.asarray(np.kron(np.eye(4), np.ones((2, 2)))[None, ..., None], jnp.float32)  # 8x8 diagonal blocks
f = np.array([0.25, 0.75, 0.75, 0.25], np.float32)
bilinear = jnp.asarray(np.outer(f, f)[:, :, None, None])
up = ops.conv_transpose(small, bilinear, stride=2, padding=1)
assert up.shape[1] == arithmetic.conv_transpose_output_size(8, 4, stride=2, padding=1) == 16
y_big = jnp.asarray(rng.normal(size=up.shape), jnp.float32)
lhs = jnp.vdot(ops.conv(y_big, bilinear, stride=2, padding=1), small)
rhs = jnp.vdot(y_big, up)
assert np.isclose(lhs, rhs, rtol=1e-4), (lhs, rhs)
plot_image_grid([np.asarray(small[0, ..., 0]), np.asarray(up[0, ..., 0])], ["input 8x8", "conv_transpose stride 2: 16x16"],
                ncols=2, size=3.0)
