"""Hand-made image features (seed 000: what came before CNNs): HOG, edge maps, intensity histograms, pixels.

Every extractor maps uint8 images ``(N, H, W)`` or ``(N, H, W, 1)`` to a float32 matrix ``(N, D)``.
"""

from __future__ import annotations

import numpy as np

FEATURES = ("hog", "edge_grid", "intensity_histogram", "pixels")


def _gray(images) -> np.ndarray:
    """``(N, H, W[, 1])`` uint8 -> ``(N, H, W)`` float32 in [0, 1]."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        raise ValueError(f"images.shape={images.shape} must be (N, H, W) or (N, H, W, 1) grayscale")
    return images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)


def hog_features(images, orientations: int = 9, pixels_per_cell: int = 4, cells_per_block: int = 2,
                 block_norm: str = "L2-Hys") -> np.ndarray:
    """Histograms of oriented gradients (Dalal & Triggs 2005) of each image, via ``skimage.feature.hog``.

    Gradients ``g = (I * [-1 0 1], I * [-1 0 1]^T)``; each ``c x c`` cell votes ``|g|`` into ``orientations``
    unsigned angle bins; each ``b x b`` block of cells is normalised (``block_norm``). A 28x28 image with
    4x4 cells and 2x2 blocks gives ``6 * 6 * 2 * 2 * 9 = 1296`` values.
    """
    from skimage.feature import hog

    gray = _gray(images)
    kwargs = dict(orientations=orientations, pixels_per_cell=(pixels_per_cell,) * 2,
                  cells_per_block=(cells_per_block,) * 2, block_norm=block_norm, feature_vector=True)
    return np.stack([hog(image, **kwargs) for image in gray]).astype(np.float32)


def _cell_means(maps: np.ndarray, grid: int) -> np.ndarray:
    """Mean of ``maps (N, H, W)`` over a ``grid x grid`` partition of each image (the last rows/columns that
    do not fill a cell are dropped): ``(N, grid * grid)``."""
    n, h, w = maps.shape
    ch, cw = h // grid, w // grid
    if ch < 1 or cw < 1:
        raise ValueError(f"grid={grid} is larger than the {h}x{w} image")
    cells = maps[:, :ch * grid, :cw * grid].reshape(n, grid, ch, grid, cw)
    return cells.mean(axis=(2, 4)).reshape(n, grid * grid)


def edge_grid_features(images, grid: int = 7) -> np.ndarray:
    """Edge map pooled on a grid: Sobel magnitude ``sqrt(G_x^2 + G_y^2)`` (seed 003) averaged in each of
    ``grid x grid`` cells."""
    from skimage.filters import sobel

    gray = _gray(images)
    return _cell_means(np.stack([sobel(image) for image in gray]), grid).astype(np.float32)


def intensity_histogram_features(images, bins: int = 16, grid: int = 2) -> np.ndarray:
    """Intensity histograms: the fraction of pixels in each of ``bins`` equal-width bins of [0, 1], for each
    of ``grid x grid`` regions of the image (a grayscale "colour histogram")."""
    gray = _gray(images)
    n, h, w = gray.shape
    levels = np.minimum((gray * bins).astype(np.int64), bins - 1)
    rh, rw = h // grid, w // grid
    if rh < 1 or rw < 1:
        raise ValueError(f"grid={grid} is larger than the {h}x{w} image")
    out = []
    for i in range(grid):
        for j in range(grid):
            region = levels[:, i * rh:(i + 1) * rh, j * rw:(j + 1) * rw].reshape(n, -1)
            counts = np.stack([np.bincount(r, minlength=bins) for r in region])
            out.append(counts / region.shape[1])
    return np.concatenate(out, axis=1).astype(np.float32)


def pixel_features(images, size: int = 14) -> np.ndarray:
    """Raw intensities averaged down to ``size x size`` (``size`` must divide the image side)."""
    gray = _gray(images)
    _, h, w = gray.shape
    if h % size or w % size:
        raise ValueError(f"pixels size={size} must divide the {h}x{w} image")
    return _cell_means(gray, size).astype(np.float32)


def extract_features(images, config) -> np.ndarray:
    """Concatenate the extractors named in ``config.features`` (see ``FEATURES``), with their settings.

    ``config`` fields: ``features`` (names), ``hog_orientations``, ``hog_pixels_per_cell``,
    ``hog_cells_per_block``, ``edge_grid``, ``histogram_bins``, ``histogram_grid``, ``pixels_size``.
    """
    parts = []
    for name in check_features(config.features):
        if name == "hog":
            parts.append(hog_features(images, int(config.hog_orientations), int(config.hog_pixels_per_cell),
                                      int(config.hog_cells_per_block)))
        elif name == "edge_grid":
            parts.append(edge_grid_features(images, int(config.edge_grid)))
        elif name == "intensity_histogram":
            parts.append(intensity_histogram_features(images, int(config.histogram_bins), int(config.histogram_grid)))
        else:
            parts.append(pixel_features(images, int(config.pixels_size)))
    return np.concatenate(parts, axis=1)


def check_features(features) -> tuple[str, ...]:
    """``features`` as a tuple of known names; a ValueError naming the value otherwise."""
    if isinstance(features, str) or not isinstance(features, (list, tuple)) or not features:
        raise ValueError(f"classic.features={features!r} must be a non-empty list of names from {FEATURES}")
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ValueError(f"classic.features={features!r}: {unknown} unknown; allowed: {', '.join(FEATURES)}")
    return tuple(features)
