"""Independent reference implementations for the ops tests: PyTorch (CPU) and plain NumPy loops.

Layout conversion NHWC/HWIO <-> NCHW/OIHW happens only here.
"""

from __future__ import annotations

import itertools
import os

import jax
import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

#: ``CNNJAX_THOROUGH=1`` multiplies the hypothesis example counts by 10 (the default keeps the suite fast).
THOROUGH = os.environ.get("CNNJAX_THOROUGH", "") not in ("", "0")


def jit_call(fn, *arrays, **kwargs):
    """``fn(*arrays, **kwargs)`` as one jitted computation: one compilation per shape instead of one per
    primitive in eager mode, which keeps the hypothesis tests fast."""
    return jax.jit(lambda *a: fn(*a, **kwargs))(*arrays)


def examples(n: int) -> int:
    """Hypothesis ``max_examples``: ``n`` by default, ``10 n`` with ``CNNJAX_THOROUGH=1``."""
    return 10 * n if THOROUGH else n

TORCH_PAD_MODE = {"constant": "constant", "edge": "replicate", "reflect": "reflect", "wrap": "circular"}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def to_torch_x(x: np.ndarray) -> torch.Tensor:
    """(N, *spatial, C) -> (N, C, *spatial)."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(x), -1, 1)))


def from_torch_x(y: torch.Tensor) -> np.ndarray:
    return np.moveaxis(y.detach().numpy(), 1, -1)


def to_torch_kernel(kernel: np.ndarray) -> torch.Tensor:
    """(*k, I, O) -> (O, I, *k)."""
    nd = kernel.ndim - 2
    return torch.from_numpy(np.ascontiguousarray(np.transpose(kernel, (nd + 1, nd, *range(nd)))))


def torch_pad(xt: torch.Tensor, pads, mode: str) -> torch.Tensor:
    """Pad the spatial axes of an (N, C, *spatial) tensor with (lo, hi) pairs, axis order as in NHWC."""
    flat = []
    for lo, hi in reversed(list(pads)):  # F.pad wants the last axis first
        flat += [lo, hi]
    if not any(flat):
        return xt
    return F.pad(xt, flat, mode=TORCH_PAD_MODE[mode])


def torch_conv(x, kernel, bias=None, *, stride, pads, dilation, groups, pad_mode="constant"):
    """conv by F.pad + F.conv{1,2,3}d; ``pads`` are explicit (lo, hi) pairs per spatial axis."""
    nd = x.ndim - 2
    xt = torch_pad(to_torch_x(x), pads, pad_mode)
    bt = None if bias is None else torch.from_numpy(np.asarray(bias))
    y = _CONV[nd](xt, to_torch_kernel(kernel), bt, stride=stride, dilation=dilation, groups=groups)
    return from_torch_x(y)


def torch_conv_transpose(x, kernel, bias=None, *, stride, padding, output_padding, dilation, groups):
    """F.conv_transpose{1,2,3}d. ``kernel`` is (*k, C_out/g, C_in) -> torch weight (C_in, C_out/g, *k)."""
    nd = x.ndim - 2
    w = torch.from_numpy(np.ascontiguousarray(np.transpose(kernel, (nd + 1, nd, *range(nd)))))
    bt = None if bias is None else torch.from_numpy(np.asarray(bias))
    y = _CONV_T[nd](
        to_torch_x(x),
        w,
        bt,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
    )
    return from_torch_x(y)


def numpy_conv_loops(x, kernel, bias=None, *, stride, pads, dilation, groups=1):
    """Direct loops over output positions: Y[n,p,k] = sum_{u,m} Xpad[n, p S + u D, m] F[u, m, k] + b[k]."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    nd = x.ndim - 2
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    window = kernel.shape[:nd]
    out = [(xp.shape[1 + a] - dilation[a] * (window[a] - 1) - 1) // stride[a] + 1 for a in range(nd)]
    c_in, c_out = x.shape[-1], kernel.shape[-1]
    cig, cog = c_in // groups, c_out // groups
    y = np.zeros((x.shape[0], *out, c_out))
    for p in itertools.product(*[range(o) for o in out]):
        for u in itertools.product(*[range(k) for k in window]):
            idx = tuple(p[a] * stride[a] + u[a] * dilation[a] for a in range(nd))
            patch = xp[(slice(None), *idx)]  # (N, C_in)
            for g in range(groups):
                y[(slice(None), *p, slice(g * cog, (g + 1) * cog))] += (
                    patch[:, g * cig : (g + 1) * cig] @ kernel[(*u, slice(None), slice(g * cog, (g + 1) * cog))]
                )
    if bias is not None:
        y += np.asarray(bias, np.float64)
    return y


def numpy_locally_connected(x, kernel, bias=None, *, stride, pads, dilation):
    """Direct loops: Y[n,p,k] = sum_{u,m} Xpad[n, p S + u D, m] W[p, u, m, k] + b[p, k]."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    nd = x.ndim - 2
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    out = kernel.shape[:nd]
    window = kernel.shape[nd : 2 * nd]
    y = np.zeros((x.shape[0], *out, kernel.shape[-1]))
    for p in itertools.product(*[range(o) for o in out]):
        for u in itertools.product(*[range(k) for k in window]):
            idx = tuple(p[a] * stride[a] + u[a] * dilation[a] for a in range(nd))
            y[(slice(None), *p)] += xp[(slice(None), *idx)] @ kernel[(*p, *u)]
        if bias is not None:
            y[(slice(None), *p)] += np.asarray(bias, np.float64)[p]
    return y


def torch_pool(kind, x, window, stride, padding, count_include_pad=True):
    """F.max_pool / F.avg_pool with symmetric int padding per axis."""
    nd = x.ndim - 2
    xt = to_torch_x(x)
    if kind == "max":
        fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
        y = fn(xt, window, stride, padding)
    else:
        fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
        y = fn(xt, window, stride, padding, count_include_pad=count_include_pad)
    return from_torch_x(y)
