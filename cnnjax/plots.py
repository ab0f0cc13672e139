"""Figures for images, kernels and feature maps, drawn on plain ``matplotlib.figure.Figure`` objects (no pyplot,
no global backend: the caller shows them in a notebook or saves them with ``fig.savefig``)."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure

from cnnjax.ops.kernels import KERNELS, filter_image


class NotebookFigure(Figure):
    """A ``Figure`` that shows itself as a PNG when it is the value of a notebook cell (``_repr_png_``)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def new_figure(**kwargs) -> NotebookFigure:
    """A new figure (``Figure`` keyword arguments, constrained layout by default), shown inline in notebooks."""
    kwargs.setdefault("layout", "constrained")
    return NotebookFigure(**kwargs)


def plot_image_grid(images, titles=(), ncols: int = 8, cmap: str = "gray", size: float = 1.6,
                    title: str = "", symmetric: bool = False) -> Figure:
    """Images (an ``(N, H, W[, C])`` array or a list of ``(H, W[, C])`` arrays) in a grid, each with an optional title. ``symmetric`` centres the colour
    scale of each image on zero (for filters and signed maps)."""
    images = [np.asarray(img) for img in images]  # may differ in shape (colour and gray side by side)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig = new_figure(figsize=(size * ncols, size * nrows + (0.4 if title else 0)))
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i]
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        kwargs = {}
        if symmetric and img.ndim == 2:
            lim = float(np.abs(img).max()) or 1.0
            kwargs = dict(vmin=-lim, vmax=lim, cmap="RdBu_r")
        elif img.ndim == 2:
            kwargs = dict(cmap=cmap)
        ax.imshow(img, **kwargs)
        if i < len(titles):
            ax.set_title(titles[i], fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def plot_kernel_gallery(image, kernel_names=tuple(KERNELS), size: float = 2.6) -> Figure:
    """``image`` filtered by each classic 3x3 kernel (:func:`cnnjax.ops.filter_image`, edge padding), with the
    kernel's weights in the title. Signed results (edges) are shown on a blue-white-red scale."""
    images, titles, signed = [], [], []
    for name in kernel_names:
        kernel = np.asarray(KERNELS[name]())
        out = np.asarray(filter_image(image, kernel))
        if out.ndim == 3:  # colour: the per-channel results, clipped to [0, 1] for display
            out = np.clip(out, 0, 1)
        images.append(out)
        rows = ["[" + " ".join(f"{v:g}" if v == int(v) else f"{v:.2f}" for v in row) + "]" for row in kernel]
        titles.append(name + "\n" + "\n".join(rows))
        signed.append(out.ndim == 2 and kernel.sum() == 0)
    n = len(images)
    ncols = min(n, 5)
    nrows = -(-n // ncols)
    fig = new_figure(figsize=(size * ncols, (size + 0.5) * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax in axes[n:]:
        ax.axis("off")
    for ax, img, title, sym in zip(axes, images, titles, signed):
        ax.axis("off")
        if sym:  # the colour scale saturates at the 99.5th percentile of |value|, so that thin edges show
            lim = float(np.percentile(np.abs(img), 99.5)) or float(np.abs(img).max()) or 1.0
            ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
        else:
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0 if img.ndim == 2 else None,
                      vmax=1 if img.ndim == 2 else None)
        ax.set_title(title, fontsize=7, family="monospace")
    return fig
