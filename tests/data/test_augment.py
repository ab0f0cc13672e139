"""Augmentation properties: identities, bounds, per-image draws, oracles (dm-pix, SciPy), config checks."""

import functools
import os

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnjax.data import augment as A
from cnnjax.data.sources import ArraySource
from configs._base import augment_config
from tests.conftest import REPO_ROOT


def _images(b=6, h=12, w=10, c=3, seed=0):
    return jnp.asarray(np.random.default_rng(seed).random((b, h, w, c)), jnp.float32)


def _config(**kw):
    c = augment_config()
    c.update(kw)
    return c


_warp = jax.jit(A.affine_warp, static_argnames=("fill_mode",))


@functools.cache
def _jitted(name):
    """Compiled augmentations shared by the tests (compiling the full chain costs seconds of CPU)."""
    configs = {"standard": augment_config("standard"), "all": augment_config("all")}
    return jax.jit(A.make_augmentation(configs[name]))


def _aug(**kw):
    return jax.jit(A.make_augmentation(_config(**kw)))


def test_everything_off_gives_none():
    assert A.make_augmentation(augment_config()) is None
    assert A.make_augmentation({**augment_config().to_dict(), "zoom": 0}) is None  # a number z means (1 - z, 1 + z)
    with pytest.raises(ValueError, match=r"augment is missing field\(s\) \['hflip'"):
        A.make_augmentation({})


@settings(max_examples=15, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), c=st.sampled_from([1, 3]), seed=st.integers(0, 2**16))
def test_flipping_twice_is_identity(h, w, c, seed):
    x = np.random.default_rng(seed).random((h, w, c)).astype(np.float32)
    np.testing.assert_array_equal(A.flip_horizontal(A.flip_horizontal(x)), x)
    np.testing.assert_array_equal(A.flip_vertical(A.flip_vertical(x)), x)
    np.testing.assert_array_equal(A.flip_horizontal(x), x[:, ::-1])


@pytest.mark.parametrize("fill_mode", ["nearest", "constant"])
def test_rotation_zero_zoom_one_is_identity(fill_mode):
    x = _images()[0]
    np.testing.assert_array_equal(_warp(x, 0.0, (1.0, 1.0), (0.0, 0.0), fill_mode), x)
    # and through the configured chain: an angle range of 0 around and zoom (1, 1) leave the batch alone
    f = _aug(shift_pixels=0.0, zoom=(1.0, 1.0), rotation_degrees=1e-30)
    np.testing.assert_allclose(f(jax.random.PRNGKey(0), _images()), _images(), atol=1e-6)


def test_rotation_by_90_degrees_is_rot90():
    x = _images(1, 9, 9, 2)[0]
    out = _warp(x, 90.0)
    # content turns counter-clockwise as displayed (row axis pointing down)
    np.testing.assert_allclose(out, np.rot90(np.asarray(x), 1, axes=(0, 1)), atol=1e-5)


def test_integer_shift_moves_content():
    x = _images(1, 8, 8, 1)[0]
    out = _warp(x, shift=(2.0, -1.0), fill_mode="constant")
    np.testing.assert_allclose(out[2:, :-1], x[:-2, 1:], atol=1e-6)
    assert float(jnp.abs(out[:2]).max()) == 0.0


_pix_warp = jax.jit(pix.affine_transform, static_argnames=("order", "mode"))


def _inverse_map(angle, sy, sx, dy, dx, h, w):
    t = np.deg2rad(angle)
    inv = np.array([[np.cos(t) / sy, np.sin(t) / sy], [-np.sin(t) / sx, np.cos(t) / sx]])
    c = np.array([(h - 1) / 2, (w - 1) / 2])
    return inv, c - inv @ (c + np.array([dy, dx]))


@settings(max_examples=15, deadline=None)
@given(angle=st.floats(-40, 40), sy=st.floats(0.6, 1.6), sx=st.floats(0.6, 1.6), dy=st.floats(-3, 3),
       dx=st.floats(-3, 3))
def test_affine_warp_matches_dm_pix_and_scipy(angle, sy, sx, dy, dx):
    """"nearest" against dm_pix.affine_transform; "constant" against SciPy's grid-constant sampling."""
    x = _images(1, 11, 9, 2, seed=1)[0]
    inv, offset = _inverse_map(angle, sy, sx, dy, dx, 11, 9)
    matrix = np.eye(3)
    matrix[:2, :2] = inv
    ours = _warp(x, angle, (sy, sx), (dy, dx), fill_mode="nearest")
    ref = _pix_warp(x, jnp.asarray(matrix, jnp.float32), offset=jnp.asarray([*offset, 0.0], jnp.float32),
                    order=1, mode="nearest")
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    ours_c = np.asarray(_warp(x, angle, (sy, sx), (dy, dx), fill_mode="constant", fill_value=0.25))
    xn = np.asarray(x, np.float64)
    for ch in range(2):
        ref_c = ndi.affine_transform(xn[..., ch], inv, offset=offset, order=1, mode="grid-constant", cval=0.25)
        np.testing.assert_allclose(ours_c[..., ch], ref_c, atol=2e-5)


@pytest.mark.parametrize("fill_mode", ["nearest", "constant"])
def test_mirrored_warp_is_the_warp_of_the_flipped_image(fill_mode):
    """``mirror=True`` flips on the sample positions: the same as warping a flipped copy (to rounding), and
    exactly the flip for the identity warp."""
    x = _images(1, 11, 9, 2, seed=3)[0]
    flipped = A.flip_horizontal(x)
    for params in [(0.0, (1.0, 1.0), (0.0, 0.0)), (17.0, (0.8, 1.3), (1.5, -2.25))]:
        want = _warp(flipped, *params, fill_mode=fill_mode, fill_value=0.25)
        got = jax.jit(A.affine_warp, static_argnames=("fill_mode",))(x, *params, fill_mode=fill_mode,
                                                                     fill_value=0.25, mirror=jnp.bool_(True))
        np.testing.assert_allclose(got, want, atol=1e-5)
        not_mirrored = A.affine_warp(x, *params, fill_mode=fill_mode, fill_value=0.25, mirror=False)
        np.testing.assert_allclose(not_mirrored, _warp(x, *params, fill_mode=fill_mode, fill_value=0.25), atol=1e-6)
    np.testing.assert_array_equal(A.affine_warp(x, mirror=True), flipped)


@pytest.mark.parametrize("mirror", ["yes", 1, jnp.array([True, False])])
def test_mirror_must_be_a_bool(mirror):
    with pytest.raises(ValueError, match="mirror=.* must be a bool"):
        A.affine_warp(_images(1, 5, 5, 1)[0], mirror=mirror)


def test_zoom_is_independent_per_axis():
    """A centred bar keeps its height when only the width is stretched (stretch/compress)."""
    x = np.zeros((21, 21, 1), np.float32)
    x[8:13, 8:13] = 1.0
    out = np.asarray(_warp(x, 0.0, (1.0, 2.0), fill_mode="constant"))
    rows, cols = np.nonzero(out[..., 0] > 0.5)
    assert (rows.min(), rows.max()) == (8, 12)
    assert cols.max() - cols.min() + 1 >= 9


def test_brightness_stays_within_bounds():
    x = _images(64, 8, 8, 1)
    f = _aug(brightness=0.2)
    out = np.asarray(f(jax.random.PRNGKey(1), x))
    assert out.min() >= 0.0 and out.max() <= 1.0
    delta = out - np.asarray(x)
    unclipped = (out > 0) & (out < 1)
    assert np.abs(delta).max() <= 0.2 + 1e-6
    # one delta per image: where not clipped, every pixel of an image moved by the same amount
    for i in range(len(x)):
        d = delta[i][unclipped[i]]
        assert np.ptp(d) < 1e-5


def test_every_config_stays_in_unit_range():
    x = _images(16, 16, 16, 1)
    out = np.asarray(_jitted("all")(jax.random.PRNGKey(2), x))
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("name", ["standard", "all"])
def test_each_image_gets_its_own_draw_and_keys_are_reproducible(name):
    f = _jitted(name)
    x = jnp.broadcast_to(_images(1, 16, 16, 1)[0], (16, 16, 16, 1))  # 16 copies of one image
    out = np.asarray(f(jax.random.PRNGKey(3), x))
    distinct = {out[i].tobytes() for i in range(16)}
    assert len(distinct) == 16
    np.testing.assert_array_equal(out, np.asarray(f(jax.random.PRNGKey(3), x)))
    assert not np.array_equal(out, np.asarray(f(jax.random.PRNGKey(4), x)))


def test_flip_probability_is_about_half():
    x = jnp.broadcast_to(jnp.arange(8.0)[None, None, :, None] / 8, (400, 2, 8, 1))
    out = np.asarray(_aug(hflip=True)(jax.random.PRNGKey(0), x))
    flipped = (out[:, 0, 0, 0] > 0.5).mean()
    assert 0.4 < flipped < 0.6
    assert all(np.array_equal(o, x[0]) or np.array_equal(o, x[0][:, ::-1]) for o in out)


def test_gaussian_blur_matches_scipy():
    x = np.asarray(_images(1, 15, 13, 2)[0])
    sigma = 1.1
    radius = int(np.ceil(3 * sigma))
    ours = np.asarray(jax.jit(A.gaussian_blur, static_argnames="max_sigma")(x, sigma, max_sigma=sigma))
    ref = ndi.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="nearest", truncate=radius / sigma)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_sharpen_strength_one_is_the_seed_kernel():
    x = np.asarray(_images(1, 10, 9, 1)[0])
    ours = np.asarray(jax.jit(A.sharpen)(x, 1.0))
    ref = np.clip(ndi.correlate(x[..., 0], A.SHARPEN_KERNEL, mode="nearest"), 0, 1)[..., None]
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_allclose(A.sharpen(x, 0.0), x, atol=1e-6)
    flat = np.full((6, 6, 1), 0.3, np.float32)  # a constant image has no detail to sharpen or blur
    np.testing.assert_allclose(A.sharpen(flat, 1.0), flat, atol=1e-6)
    np.testing.assert_allclose(A.gaussian_blur(flat, 1.0), flat, atol=1e-6)


def test_random_erasing_cuts_one_rectangle_of_the_allowed_area():
    x = jnp.ones((50, 20, 20, 1))
    f = _aug(erase_prob=1.0, erase_fill="zero", erase_area=(0.05, 0.2))
    out = np.asarray(f(jax.random.PRNGKey(0), x))[..., 0]
    for img in out:
        rows, cols = np.nonzero(img == 0)
        assert len(rows) > 0
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box == len(rows)  # a filled rectangle
        assert 0.05 * 400 * 0.5 <= len(rows) <= 0.2 * 400 * 1.6  # rounding of the sides


def test_noise_std():
    x = jnp.full((8, 32, 32, 1), 0.5)
    out = np.asarray(_aug(noise_std=0.05)(jax.random.PRNGKey(0), x))
    assert abs(out.std() - 0.05) < 0.005 and abs(out.mean() - 0.5) < 0.005


def test_contrast_keeps_channel_mean():
    x = _images(4, 8, 8, 3) * 0.5 + 0.25
    out = jax.jit(A.adjust_contrast)(x[0], 1.3)
    np.testing.assert_allclose(np.asarray(out).mean(axis=(0, 1)), np.asarray(x[0]).mean(axis=(0, 1)), atol=1e-5)


def test_bfloat16_input_keeps_dtype():
    x = _images(4, 8, 8, 1).astype(jnp.bfloat16)
    out = _aug(brightness=0.1, hflip=True)(jax.random.PRNGKey(0), x)
    assert out.dtype == jnp.bfloat16


@pytest.mark.parametrize("kw,match", [
    (dict(rotation="10"), "unknown field"),
    (dict(brightness=-0.1), "brightness=-0.1 must be >= 0"),
    (dict(blur_prob=1.5), "blur_prob=1.5 must be a probability"),
    (dict(zoom=(1.2, 0.8)), "low <= high"),
    (dict(zoom=(0.0, 1.0)), "must be > 0"),
    (dict(fill_mode="wrap"), "fill_mode='wrap'"),
    (dict(erase_fill="mean"), "erase_fill='mean'"),
    (dict(contrast=1.5), "contrast=1.5 must be <= 1"),
])
def test_bad_config_is_rejected_before_tracing(kw, match):
    with pytest.raises(ValueError, match=match):
        A.make_augmentation({**augment_config().to_dict(), **kw})


def test_wrong_rank_images():
    f = A.make_augmentation(_config(hflip=True))
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        f(jax.random.PRNGKey(0), jnp.zeros((8, 8, 1)))


def test_config_overrides_like_the_command_line():
    """--config.augment.* flags parsed by ml_collections as experiments.run does: the tuple and the booleans
    arrive with their types and the augmentation built from them does what they say (zoom 1.5 exactly, vertical
    flips for about half of the images, no horizontal flips although the lenet recipe has them on)."""
    from absl import flags
    from ml_collections import config_flags

    argv = ["run", f"--config={os.path.join(REPO_ROOT, 'configs', 'lenet.py')}", "--config.augment.zoom=(1.5, 1.5)",
            "--config.augment.hflip=False", "--config.augment.vflip=True"]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True, sys_argv=argv)
    flag_values(argv)
    augment = flag_values.config.augment
    assert tuple(augment.zoom) == (1.5, 1.5) and augment.hflip is False and augment.vflip is True
    x = _images(1, 9, 11, 1, seed=5)[0]
    zoomed = np.asarray(_warp(x, 0.0, (1.5, 1.5)))
    out = np.asarray(jax.jit(A.make_augmentation(augment))(jax.random.PRNGKey(0), jnp.broadcast_to(x, (40, 9, 11, 1))))
    upright = [np.allclose(o, zoomed, atol=1e-5) for o in out]
    upside_down = [np.allclose(o, zoomed[::-1], atol=1e-5) for o in out]
    assert all(u or d for u, d in zip(upright, upside_down))
    assert 8 <= sum(upside_down) <= 32
    assert not np.allclose(zoomed, zoomed[:, ::-1], atol=1e-3)  # a horizontal flip would have been seen


def test_normalize_per_channel():
    x = _images(2, 4, 4, 3)
    out = np.asarray(A.normalize(x, [0.1, 0.2, 0.3], [0.5, 1.0, 2.0]))
    np.testing.assert_allclose(out[..., 2], (np.asarray(x)[..., 2] - 0.3) / 2.0, rtol=1e-6)
    with pytest.raises(ValueError, match="one value per channel"):
        A.normalize(x, [0.1, 0.2], 1.0)
    with pytest.raises(ValueError, match="must be > 0"):
        A.normalize(x, 0.0, [1.0, 0.0, 1.0])


def test_scale_and_channel_stats():
    images = np.random.default_rng(0).integers(0, 256, (50, 4, 4, 2), dtype=np.uint8)
    src = ArraySource(images, np.zeros(50, np.int32))
    mean, std = A.channel_mean_std(src)
    np.testing.assert_allclose(mean, images.mean(axis=(0, 1, 2)) / 255, rtol=1e-5)
    np.testing.assert_allclose(std, images.std(axis=(0, 1, 2)) / 255, rtol=1e-5)
    normed = np.asarray(A.normalize(A.scale_images(images), mean, std))
    np.testing.assert_allclose(normed.mean(axis=(0, 1, 2)), 0, atol=1e-4)


def test_grid_picture(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 12, 12, 1), dtype=np.uint8)
    path = A.save_augmentation_grid(images, A.make_augmentation(_config(hflip=True, brightness=0.3)), tmp_path / "grid.png",
                                    num_variants=4, labels=[0, 1, 2], class_names=["a", "b", "c"], title="t")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 200


def test_uniform_bytes_is_uniform_over_the_256_levels():
    """The erasing fill: (k + 1/2) / 256 with every k in 0..255 equally likely, reproducible per key."""
    key = jax.random.PRNGKey(3)
    u = np.asarray(jax.jit(A.uniform_bytes, static_argnums=1)(key, (7, 100, 73)))  # 51,100: not a multiple of 4
    assert u.shape == (7, 100, 73) and u.dtype == np.float32
    k = u * 256 - 0.5
    np.testing.assert_array_equal(k, np.round(k))
    counts = np.bincount(k.astype(int).ravel(), minlength=256)
    assert counts.size == 256 and counts.min() > 0
    expected = u.size / 256
    assert ((counts - expected) ** 2 / expected).sum() < 330  # chi-square, 255 dof: p ~ 0.001
    np.testing.assert_array_equal(u, np.asarray(A.uniform_bytes(key, (7, 100, 73))))
    assert not np.array_equal(u, np.asarray(A.uniform_bytes(jax.random.PRNGKey(4), (7, 100, 73))))


def test_random_erasing_fills_with_noise():
    x = jnp.zeros((20, 16, 16, 1))
    out = np.asarray(_aug(erase_prob=1.0, erase_fill="random", erase_area=(0.1, 0.2))(jax.random.PRNGKey(1), x))
    for img in out:
        filled = img[img > 0]
        assert 0.1 * 256 * 0.5 <= filled.size <= 0.2 * 256 * 1.6
        assert filled.max() < 1 and len(np.unique(filled)) > filled.size // 4


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(shape=(4, 4), dtype=jnp.int32), "dtype=int32 must be a floating dtype"),
     (dict(shape=(4, -1)), "shape=(4, -1) must be a tuple of non-negative ints"),
     (dict(shape=(4, 2.5)), "shape=(4, 2.5) must be a tuple of non-negative ints")],
)
def test_uniform_bytes_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        A.uniform_bytes(jax.random.PRNGKey(0), **kwargs)
