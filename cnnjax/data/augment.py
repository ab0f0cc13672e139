"""Training-set augmentation as jittable JAX functions, one random draw per image, run on the device.

Seed 003 augments the *training* images only (rotation, flips, brightness/contrast, stretch/compress,
blur/sharpen, noise); validation and test images are never touched. Here:

- ``config.augment`` (its fields and defaults: ``configs/_base.py``'s ``augment_config()``, every transform
  off; ``augment_config("standard")`` a light preset for 28x28 clothing/digit images).
- ``make_augmentation(config)`` returns ``augment(key, images) -> images`` for float images
  ``(B, H, W, C)`` in ``[0, 1]`` (or ``None`` when every transform is off). It splits ``key`` into one
  key per image and ``jax.vmap``s the per-image chain, so every image gets its own draw. It is pure and
  jittable: the train step calls it inside ``jit`` on the already scaled batch.
- The per-image transforms are public too (``flip_horizontal``, ``affine_warp``, ``adjust_brightness``,
  ``adjust_contrast``, ``gaussian_blur``, ``sharpen``, ``add_gaussian_noise``, ``erase_rectangle``, and ``uniform_bytes``, the erasing fill).

Order of the chain: flips -> one affine warp (rotation, zoom, shift; bilinear, ``fill_mode``) ->
brightness -> contrast -> blur -> sharpen -> noise -> random erasing; the result is clipped to [0, 1].
dm-pix does the flips and the contrast formula; the warp is a 2-D bilinear gather (see ``affine_warp``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.data.sources import gather_batch

FILL_MODES = ("nearest", "constant")
ERASE_FILLS = ("random", "zero")


# The fields of ``config.augment``. Their defaults and meaning are written once, in ``configs/_base.py``
# (``augment_config()``, also the "standard"/"all" presets); this module reads a complete config and checks it.
AUGMENT_FIELDS = ("hflip", "vflip", "rotation_degrees", "shift_pixels", "zoom", "zoom_keep_aspect", "fill_mode",
                  "fill_value", "brightness", "contrast", "blur_prob", "blur_sigma", "sharpen_prob",
                  "sharpen_strength", "noise_std", "erase_prob", "erase_area", "erase_ratio", "erase_fill")


# ----------------------------------------------------------------------------------------------------
# Per-image transforms: image (H, W, C) float in [0, 1].


def flip_horizontal(image):
    """Mirror left-right (the width axis)."""
    return pix.flip_left_right(image)


def flip_vertical(image):
    """Mirror up-down (the height axis)."""
    return pix.flip_up_down(image)


def affine_warp(image, angle_degrees=0.0, scale=(1.0, 1.0), shift=(0.0, 0.0), fill_mode="nearest", fill_value=0.0,
                mirror=False):
    """Rotate by ``angle_degrees``, scale by ``scale = (sy, sx)`` and shift by ``(dy, dx)`` pixels.

    The content moves by ``p_out = R(angle) diag(sy, sx) (p_in - c) + c + shift`` around the centre
    ``c = ((H - 1) / 2, (W - 1) / 2)``; every output pixel is sampled bilinearly at the inverse map
    ``p_in = diag(1/sy, 1/sx) R(-angle) (p_out - c - shift) + c`` (the sampling of
    ``dm_pix.affine_transform``, done here with one 2-D gather instead of dm-pix's 3-D one, which is
    ~50x slower on CPU). The identity parameters give the image back exactly (integer sample positions).
    ``mirror`` (a bool, traced or not) flips the input horizontally first, ``x -> W - 1 - x`` on the sample
    positions: ``affine_warp(flip_horizontal(im), ...)`` without a flipped copy (XLA:CPU fuses that copy
    into the gather and recomputes it per tap: 3x slower).
    """
    h, w = image.shape[0], image.shape[1]
    if not isinstance(mirror, bool) and (getattr(mirror, "dtype", None) != jnp.bool_ or jnp.shape(mirror) != ()):
        raise ValueError(f"mirror={mirror!r} must be a bool (a Python bool or a scalar boolean array)")
    theta = jnp.deg2rad(jnp.asarray(angle_degrees, jnp.float32))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    sy, sx = jnp.asarray(scale[0], jnp.float32), jnp.asarray(scale[1], jnp.float32)
    # The six coefficients are materialised first, so XLA does not recompute cos/sin per pixel.
    a = _barrier(jnp.stack([cos / sy, sin / sy, -sin / sx, cos / sx,
                            jnp.asarray(shift[0], jnp.float32), jnp.asarray(shift[1], jnp.float32)]))
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    dy = yy - cy - a[4]
    dx = xx - cx - a[5]
    src_y = a[0] * dy + a[1] * dx + cy
    src_x = a[2] * dy + a[3] * dx + cx
    src_x = jnp.where(mirror, (w - 1) - src_x, src_x)
    return bilinear_sample(image, src_y, src_x, fill_mode, fill_value)


def bilinear_sample(image, ys, xs, fill_mode="nearest", fill_value=0.0):
    """Sample ``image (H, W, C)`` at the float positions ``(ys, xs)`` (any equal shapes) bilinearly.

    Positions outside the image take the nearest edge pixel (``fill_mode="nearest"``) or ``fill_value``
    (``"constant"``; each of the four taps outside counts as ``fill_value``).
    """
    h, w, c = image.shape
    y0 = jnp.floor(ys)
    x0 = jnp.floor(xs)
    wy, wx = ys - y0, xs - x0
    y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
    flat = image.reshape(h * w, c)

    def tap(yi, xi):
        v = flat[jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)]
        if fill_mode == "constant":
            inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
            v = jnp.where(inside[..., None], v, jnp.asarray(fill_value, image.dtype))
        return v

    wy, wx = wy[..., None], wx[..., None]
    top = tap(y0, x0) * (1 - wx) + tap(y0, x0 + 1) * wx
    bottom = tap(y0 + 1, x0) * (1 - wx) + tap(y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy


def adjust_brightness(image, delta):
    """``clip(x + delta, 0, 1)``."""
    return jnp.clip(image + delta, 0.0, 1.0)


def adjust_contrast(image, factor):
    """``clip(mean_c + factor (x - mean_c), 0, 1)`` with the per-channel mean (dm-pix's formula)."""
    return jnp.clip(pix.adjust_contrast(image, factor), 0.0, 1.0)


def _gaussian_kernel(sigma, radius: int):
    x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    k = jnp.exp(-0.5 * (x / jnp.maximum(sigma, 1e-3)) ** 2)
    return k / k.sum()


def _stencil_matrix(n: int, taps):
    """``(n, n)`` matrix ``M`` with ``(M v)[i] = sum_t taps[t] v[clip(i + t - r, 0, n - 1)]`` (edge replicate).

    Stencils are applied as matrix products, not as sums of shifted slices: XLA:CPU fuses shifted slices
    into their producer and recomputes the whole upstream chain once per tap (measured ~20x slower),
    and its depthwise convolutions with one channel are slow; a batched matmul reads its input once.
    """
    r = (taps.shape[0] - 1) // 2
    idx = np.clip(np.arange(n)[:, None] + np.arange(-r, r + 1)[None, :], 0, n - 1)  # (n, k)
    onehot = np.eye(n, dtype=np.float32)[idx]  # (n, k, n)
    return jnp.einsum("k,nkj->nj", taps, onehot)


def _apply_hw(image, mh, mw):
    """``mh @ image @ mw^T`` on every channel of ``image (H, W, C)``."""
    out = jnp.einsum("ij,jwc->iwc", mh, image)
    return jnp.einsum("wj,ijc->iwc", mw, out)


def gaussian_blur(image, sigma, max_sigma: float | None = None):
    """Separable Gaussian blur, edges replicated; the kernel radius is ``ceil(3 max_sigma)`` (static)."""
    h, w = image.shape[0], image.shape[1]
    radius = max(1, math.ceil(3 * float(max_sigma if max_sigma is not None else sigma)))
    radius = min(radius, max(1, (min(h, w) - 1) // 2))
    taps = _gaussian_kernel(sigma, radius)
    return _apply_hw(image, _stencil_matrix(h, taps), _stencil_matrix(w, taps))


SHARPEN_KERNEL = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32)  # seeds 001/003


def sharpen(image, strength=1.0):
    """``x + strength (K*x - x)`` with the 3x3 sharpen kernel K (edges replicated); clipped to [0, 1].

    ``K*x - x = (2x - up - down) + (2x - left - right)``: two 1-D second differences, applied as matrices.
    """
    h, w = image.shape[0], image.shape[1]
    second = np.array([-1.0, 2.0, -1.0], np.float32)
    dh, dw = _stencil_matrix(h, jnp.asarray(second)), _stencil_matrix(w, jnp.asarray(second))
    detail = jnp.einsum("ij,jwc->iwc", dh, image) + jnp.einsum("wj,ijc->iwc", dw, image)
    return jnp.clip(image + strength * detail, 0.0, 1.0)


def add_gaussian_noise(key, image, std):
    """``clip(x + std * N(0, 1), 0, 1)``."""
    return jnp.clip(image + std * jax.random.normal(key, image.shape, image.dtype), 0.0, 1.0)


def uniform_bytes(key, shape, dtype=jnp.float32):
    """Uniform noise at 8-bit resolution, ``(k + 1/2) / 256`` with ``k`` uniform in ``0..255``: four values
    per 32-bit random word, so a quarter of the threefry work of ``jax.random.uniform`` (which made the
    random fill of erasing half of the default augmentations' cost on CPU). Fine for image fill: the
    images themselves are 8-bit."""
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype={jnp.dtype(dtype).name} must be a floating dtype (the noise lies in (0, 1))")
    if any(not isinstance(d, (int, np.integer)) or d < 0 for d in shape):
        raise ValueError(f"shape={shape!r} must be a tuple of non-negative ints")
    n = math.prod(shape)
    words = jax.random.bits(key, (-(-n // 4),), jnp.uint32)
    k = (words[:, None] >> jnp.array([0, 8, 16, 24], jnp.uint32)) & 255
    return ((k.reshape(-1)[:n].astype(jnp.float32) + 0.5) / 256).astype(dtype).reshape(shape)


def erase_rectangle(image, top, left, height, width, fill):
    """Replace the pixels with ``top <= y < top + height`` and ``left <= x < left + width`` by ``fill``."""
    h, w = image.shape[0], image.shape[1]
    ys = jnp.arange(h)[:, None, None]
    xs = jnp.arange(w)[None, :, None]
    inside = (ys >= top) & (ys < top + height) & (xs >= left) & (xs < left + width)
    return jnp.where(inside, fill, image)


# ----------------------------------------------------------------------------------------------------
# The composed, configured augmentation.

_RANGE_FIELDS = ("zoom", "blur_sigma", "sharpen_strength", "erase_area", "erase_ratio")
_PROB_FIELDS = ("blur_prob", "sharpen_prob", "erase_prob")


def _as_range(name, value):
    if isinstance(value, (int, float)):
        if name == "zoom":  # a number z means (1 - z, 1 + z) like Keras' zoom_range; 0 is off
            return (1.0 - float(value), 1.0 + float(value))
        return (float(value), float(value))
    value = tuple(float(v) for v in value)
    if len(value) != 2 or value[0] > value[1]:
        raise ValueError(f"augment.{name}={value!r} must be a (low, high) pair with low <= high")
    return value


def _settings(config) -> dict:
    s = dict(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    unknown = sorted(set(s) - set(AUGMENT_FIELDS))
    if unknown:
        raise ValueError(f"augment has unknown field(s) {unknown}; allowed: {', '.join(AUGMENT_FIELDS)}")
    missing = [name for name in AUGMENT_FIELDS if name not in s]
    if missing:
        raise ValueError(f"augment is missing field(s) {missing}; start from configs._base.augment_config()")
    for name in _RANGE_FIELDS:
        s[name] = _as_range(name, s[name])
    for name in ("rotation_degrees", "shift_pixels", "brightness", "contrast", "noise_std"):
        s[name] = float(s[name])
        if s[name] < 0:
            raise ValueError(f"augment.{name}={s[name]!r} must be >= 0")
    for name in _PROB_FIELDS:
        s[name] = float(s[name])
        if not 0.0 <= s[name] <= 1.0:
            raise ValueError(f"augment.{name}={s[name]!r} must be a probability in [0, 1]")
    if s["zoom"][0] <= 0:
        raise ValueError(f"augment.zoom={s['zoom']!r}: scale factors must be > 0")
    if s["contrast"] > 1:
        raise ValueError(f"augment.contrast={s['contrast']!r} must be <= 1 (factor 1 - c must stay >= 0)")
    if s["blur_sigma"][0] <= 0:
        raise ValueError(f"augment.blur_sigma={s['blur_sigma']!r} must be > 0")
    if not (0 < s["erase_area"][0] and s["erase_area"][1] <= 1):
        raise ValueError(f"augment.erase_area={s['erase_area']!r} must lie in (0, 1]")
    if s["erase_ratio"][0] <= 0:
        raise ValueError(f"augment.erase_ratio={s['erase_ratio']!r} must be > 0")
    if s["fill_mode"] not in FILL_MODES:
        raise ValueError(f"augment.fill_mode={s['fill_mode']!r} is not allowed; allowed: {', '.join(FILL_MODES)}")
    if s["erase_fill"] not in ERASE_FILLS:
        raise ValueError(f"augment.erase_fill={s['erase_fill']!r} is not allowed; allowed: {', '.join(ERASE_FILLS)}")
    s["hflip"], s["vflip"], s["zoom_keep_aspect"] = bool(s["hflip"]), bool(s["vflip"]), bool(s["zoom_keep_aspect"])
    return s


def _is_off(s) -> bool:
    return not (s["hflip"] or s["vflip"] or s["rotation_degrees"] or s["shift_pixels"] or s["zoom"] != (1.0, 1.0)
                or s["brightness"] or s["contrast"] or s["blur_prob"] or s["sharpen_prob"] or s["noise_std"]
                or s["erase_prob"])


def make_augmentation(config) -> Callable[[jax.Array, jax.Array], jax.Array] | None:
    """``augment(key, images)`` for float images ``(B, H, W, C)`` in [0, 1], or None if all is off.

    ``config`` is a ConfigDict (or dict) with every field of ``AUGMENT_FIELDS`` (``configs/_base.py``'s
    ``augment_config()`` and the run's overrides). Invalid values raise ``ValueError`` here, before any tracing. Every image gets its
    own key (``jax.random.split(key, B)``) and so its own draw of every random parameter.
    """
    s = _settings(config)
    if _is_off(s):
        return None

    def one(key, image):
        # One threefry call draws every scalar parameter of this image (uniforms in [0, 1)); a second
        # and third only when noise / random-fill erasing need a full image of random numbers. Many
        # small random calls cost more than the transforms themselves on CPU.
        k_scalars, k_noise, k_fill = jax.random.split(key, 3)
        u = _barrier(jax.random.uniform(k_scalars, (_NUM_UNIFORMS,)))  # not recomputed per pixel

        def between(i, lo, hi):
            return lo + (hi - lo) * u[i]

        x = image
        warp = bool(s["rotation_degrees"] or s["shift_pixels"] or s["zoom"] != (1.0, 1.0))
        mirror = (u[0] < 0.5) if s["hflip"] else False
        if s["hflip"] and not warp:  # with a warp, the flip is done on its sample positions
            x = _barrier(jnp.where(mirror, flip_horizontal(x), x))
        if s["vflip"]:
            x = _barrier(jnp.where(u[1] < 0.5, flip_vertical(x), x))
        if warp:
            d, p = s["rotation_degrees"], s["shift_pixels"]
            lo, hi = s["zoom"]
            angle = between(2, -d, d)
            sy = between(3, lo, hi)
            sx = sy if s["zoom_keep_aspect"] else between(4, lo, hi)
            shift = (between(5, -p, p), between(6, -p, p))
            x = _barrier(affine_warp(x, angle, (sy, sx), shift, s["fill_mode"], s["fill_value"], mirror))
        if s["brightness"]:
            x = _barrier(adjust_brightness(x, between(7, -s["brightness"], s["brightness"])))
        if s["contrast"]:
            x = _barrier(adjust_contrast(x, between(8, 1 - s["contrast"], 1 + s["contrast"])))
        if s["blur_prob"]:
            lo, hi = s["blur_sigma"]
            x = _barrier(jnp.where(u[9] < s["blur_prob"], gaussian_blur(x, between(10, lo, hi), max_sigma=hi), x))
        if s["sharpen_prob"]:
            lo, hi = s["sharpen_strength"]
            x = _barrier(jnp.where(u[11] < s["sharpen_prob"], sharpen(x, between(12, lo, hi)), x))
        if s["noise_std"]:
            x = _barrier(add_gaussian_noise(k_noise, x, s["noise_std"]))
        if s["erase_prob"]:
            x = jnp.where(u[13] < s["erase_prob"], _random_erase(u[14:18], k_fill, x, s), x)
        return jnp.clip(x, 0.0, 1.0)

    def augment(key, images):
        if images.ndim != 4:
            raise ValueError(f"images.shape={images.shape} must be (B, H, W, C)")
        keys = jax.random.split(key, images.shape[0])
        dtype = images.dtype
        out = jax.vmap(one)(keys, images.astype(jnp.float32))
        return out.astype(dtype)

    return augment


_NUM_UNIFORMS = 18


def _random_erase(u, key, image, s):
    """Random erasing from four uniforms ``u`` (area, log aspect ratio, top, left) and a fill key."""
    h, w = image.shape[0], image.shape[1]
    a_lo, a_hi = s["erase_area"]
    area = (a_lo + (a_hi - a_lo) * u[0]) * h * w
    log_lo, log_hi = math.log(s["erase_ratio"][0]), math.log(s["erase_ratio"][1])
    ratio = jnp.exp(log_lo + (log_hi - log_lo) * u[1])
    eh = jnp.clip(jnp.round(jnp.sqrt(area * ratio)), 1, h).astype(jnp.int32)
    ew = jnp.clip(jnp.round(jnp.sqrt(area / ratio)), 1, w).astype(jnp.int32)
    top = jnp.minimum(jnp.floor(u[2] * (h - eh + 1)).astype(jnp.int32), h - eh)
    left = jnp.minimum(jnp.floor(u[3] * (w - ew + 1)).astype(jnp.int32), w - ew)
    fill = uniform_bytes(key, image.shape, image.dtype) if s["erase_fill"] == "random" else 0.0
    return erase_rectangle(image, top, left, eh, ew, fill)


# ----------------------------------------------------------------------------------------------------
# Normalisation.


def scale_images(images, dtype=jnp.float32):
    """uint8 images -> ``dtype`` in [0, 1] (``x / 255``); the train and eval steps scale their batches with it."""
    return jnp.asarray(images).astype(dtype) / 255.0


def normalize(images, mean, std):
    """Per-channel standardisation ``(x - mean_c) / std_c`` of images ``(..., C)`` (already in [0, 1]).

    ``mean`` and ``std`` are scalars or length-C sequences; ``std`` must be positive.
    """
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    channels = images.shape[-1]
    for name, v in (("mean", mean), ("std", std)):
        if v.ndim > 1 or (v.ndim == 1 and v.shape[0] not in (1, channels)):
            raise ValueError(f"{name} has shape {v.shape}; it must be a scalar or have one value per channel ({channels})")
    if np.any(std <= 0):
        raise ValueError(f"std={std.tolist()} must be > 0")
    return (images - jnp.asarray(mean)) / jnp.asarray(std)


def channel_mean_std(source, max_examples: int = 10_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of ``source``'s images scaled to [0, 1] (a random sample of at most
    ``max_examples``), for ``normalize``."""
    n = len(source)
    idx = np.sort(np.random.default_rng(seed).permutation(n)[: min(n, max_examples)])
    x = gather_batch(source, idx)["image"].astype(np.float64) / 255.0
    return x.mean(axis=(0, 1, 2)).astype(np.float32), x.std(axis=(0, 1, 2)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Picture.


def save_augmentation_grid(images, augment, path, num_variants: int = 7, seed: int = 0, labels=None,
                           class_names=None, title: str | None = None) -> str:
    """Draw a grid: one row per image, its original in the first column, then ``num_variants`` draws.

    ``images``: uint8 ``(N, H, W, C)`` or floats in [0, 1]; ``augment``: the function from
    ``make_augmentation``. Writes a PNG to ``path`` (matplotlib, Agg) and returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    fn = jax.jit(augment)
    columns = [x] + [np.asarray(fn(jax.random.PRNGKey(seed * 1000 + v), jnp.asarray(x))) for v in range(num_variants)]
    n, cols = len(x), num_variants + 1
    fig, axes = plt.subplots(n, cols, figsize=(1.3 * cols, 1.3 * n + (0.4 if title else 0)), squeeze=False)
    for r in range(n):
        for c in range(cols):
            ax = axes[r, c]
            img = columns[c][r]
            if img.shape[-1] == 1:
                ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(np.clip(img, 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if c == 0 else f"draw {c}", fontsize=8)
            if c == 0 and labels is not None:
                name = class_names[int(labels[r])] if class_names is not None else str(int(labels[r]))
                ax.set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def _barrier(x):
    """Materialise ``x``: stops XLA:CPU from fusing a gather into later reductions (measured 25x slower)."""
    return jax.lax.optimization_barrier(x)
