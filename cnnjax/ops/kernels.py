"""Classic hand-made 3x3 kernels (seeds 001 and 003) and ``filter_image`` to apply them to a picture.

All kernels are ``(3, 3)`` float32 arrays used as the lectures do: by cross-correlation (no flip),
``out[m, n] = sum_ij w[i, j] x[m + i - 1, n + j - 1]``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from cnnjax.ops.conv import conv

__all__ = [
    "KERNELS",
    "box_blur",
    "edge_diagonal",
    "filter_image",
    "gaussian_blur",
    "identity",
    "laplacian4",
    "laplacian8",
    "sharpen",
    "sobel_x",
    "sobel_y",
]


def _k(rows, scale=1.0):
    return jnp.asarray(np.asarray(rows, dtype=np.float32) * np.float32(scale))


def identity():
    """Identity (seed 001): ``[[0,0,0],[0,1,0],[0,0,0]]`` — returns the image unchanged."""
    return _k([[0, 0, 0], [0, 1, 0], [0, 0, 0]])


def sobel_x():
    """Sobel ``G_x`` (seed 003, Sobel & Feldman): ``[[-1,0,1],[-2,0,2],[-1,0,1]]`` — responds to vertical edges."""
    return _k([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])


def sobel_y():
    """Sobel ``G_y`` (seed 003): ``[[-1,-2,-1],[0,0,0],[1,2,1]]`` — responds to horizontal edges."""
    return _k([[-1, -2, -1], [0, 0, 0], [1, 2, 1]])


def edge_diagonal():
    """Edge detection (seed 001, first kernel): ``[[1,0,-1],[0,0,0],[-1,0,1]]`` — diagonal differences."""
    return _k([[1, 0, -1], [0, 0, 0], [-1, 0, 1]])


def laplacian4():
    """4-neighbour Laplacian / edge detection (seed 001): ``[[0,1,0],[1,-4,1],[0,1,0]]``."""
    return _k([[0, 1, 0], [1, -4, 1], [0, 1, 0]])


def laplacian8():
    """8-neighbour Laplacian / edge detection (seed 001): ``[[-1,-1,-1],[-1,8,-1],[-1,-1,-1]]``."""
    return _k([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])


def sharpen():
    """Sharpen (seed 001): ``[[0,-1,0],[-1,5,-1],[0,-1,0]]`` (identity minus the 4-neighbour Laplacian)."""
    return _k([[0, -1, 0], [-1, 5, -1], [0, -1, 0]])


def box_blur():
    """Normalised box blur (seed 001): ``(1/9) [[1,1,1],[1,1,1],[1,1,1]]``."""
    return _k(np.ones((3, 3)), 1 / 9)


def gaussian_blur():
    """3x3 Gaussian blur approximation (seed 001): ``(1/16) [[1,2,1],[2,4,2],[1,2,1]]``."""
    return _k([[1, 2, 1], [2, 4, 2], [1, 2, 1]], 1 / 16)


KERNELS = {
    f.__name__: f
    for f in (identity, sobel_x, sobel_y, edge_diagonal, laplacian4, laplacian8, sharpen, box_blur, gaussian_blur)
}


def filter_image(image, kernel, padding="SAME", pad_mode: str = "edge"):
    """Apply a 2-D kernel to each channel of one image (seeds 001/003): ``out = image * kernel`` per channel.

    Args:
      image: ``(H, W)`` grayscale or ``(H, W, C)`` colour, uint8 (0..255) or float. uint8 images are
        scaled to [0, 1] first (seed 000); the result is float32 and is *not* clipped (edge kernels give
        negative values).
      kernel: ``(kh, kw)`` array, or the name of one of :data:`KERNELS` (e.g. "sobel_x").
      padding: as in :func:`cnnjax.ops.conv`; "SAME" keeps the size.
      pad_mode: "constant", "edge" (default: no dark frame around blurred images), "reflect", "wrap".

    Returns:
      float array of shape ``(H', W')`` or ``(H', W', C)``.
    """
    if isinstance(kernel, str):
        if kernel not in KERNELS:
            raise ValueError(f"kernel={kernel!r} is unknown; allowed: {', '.join(KERNELS)}")
        kernel = KERNELS[kernel]()
    kernel = jnp.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(f"kernel.shape={kernel.shape} must be (kh, kw)")
    image = jnp.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image.shape={image.shape} must be (H, W) or (H, W, C)")
    if image.dtype == jnp.uint8:
        image = image.astype(jnp.float32) / 255.0
    elif not jnp.issubdtype(image.dtype, jnp.inexact):
        image = image.astype(jnp.float32)
    x = image[None, ..., None] if image.ndim == 2 else jnp.moveaxis(image, -1, 0)[..., None]
    y = conv(x, kernel[:, :, None, None].astype(image.dtype), padding=padding, pad_mode=pad_mode)[..., 0]
    return y[0] if image.ndim == 2 else jnp.moveaxis(y, 0, -1)
