"""Classic 3x3 kernels (seeds 001, 003) and filter_image."""

import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.ops import kernels

SLIDE = {  # seed 001's table; seed 003's Sobel kernels
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "edge_diagonal": [[1, 0, -1], [0, 0, 0], [-1, 0, 1]],
    "laplacian4": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "laplacian8": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "box_blur": np.ones((3, 3)) / 9,
    "gaussian_blur": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16,
    "sobel_x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel_y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
}


@pytest.mark.parametrize("name", sorted(SLIDE))
def test_kernel_values(name):
    k = getattr(kernels, name)()
    assert k.shape == (3, 3) and k.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(k), np.asarray(SLIDE[name], np.float64), rtol=1e-7)
    assert set(kernels.KERNELS) == set(SLIDE)


def test_kernel_sums():
    # blurs and sharpen preserve a constant image (sum 1); edge detectors kill it (sum 0)
    for name in ("identity", "box_blur", "gaussian_blur", "sharpen"):
        assert float(kernels.KERNELS[name]().sum()) == pytest.approx(1.0)
    for name in ("edge_diagonal", "laplacian4", "laplacian8", "sobel_x", "sobel_y"):
        assert float(kernels.KERNELS[name]().sum()) == 0.0


@pytest.fixture
def photo():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)


def test_identity_returns_the_image(photo):
    out = kernels.filter_image(photo, "identity")
    assert out.shape == photo.shape and out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), photo / 255.0, rtol=1e-6)  # uint8 scaled to [0, 1]
    gray = photo[..., 0]
    np.testing.assert_allclose(np.asarray(kernels.filter_image(gray, kernels.identity())), gray / 255.0, rtol=1e-6)


def test_filter_image_each_channel_separately(photo):
    out = np.asarray(kernels.filter_image(photo, "laplacian8", pad_mode="constant"))
    for c in range(3):
        np.testing.assert_allclose(
            out[..., c], np.asarray(kernels.filter_image(photo[..., c], "laplacian8", pad_mode="constant")), rtol=1e-6
        )


def test_filter_image_by_hand():
    img = np.arange(30, dtype=np.float32).reshape(5, 6)
    out = np.asarray(kernels.filter_image(img, "sharpen", padding="VALID"))
    assert out.shape == (3, 4)
    i, j = 1, 2  # output (1, 2) is centred on input (2, 3)
    assert out[i, j] == 5 * img[2, 3] - img[1, 3] - img[3, 3] - img[2, 2] - img[2, 4]


def test_sobel_on_a_ramp():
    """A left-to-right ramp: sobel_x sees a constant gradient (8 per unit slope), sobel_y sees nothing."""
    ramp = np.tile(np.arange(8, dtype=np.float32), (6, 1))
    gx = np.asarray(kernels.filter_image(ramp, "sobel_x", padding="VALID"))
    gy = np.asarray(kernels.filter_image(ramp, "sobel_y", padding="VALID"))
    np.testing.assert_allclose(gx, 8.0)
    np.testing.assert_allclose(gy, 0.0)


def test_blur_keeps_a_constant_image_with_edge_padding():
    flat = np.full((6, 7), 0.5, np.float32)
    for name in ("box_blur", "gaussian_blur", "sharpen"):
        np.testing.assert_allclose(np.asarray(kernels.filter_image(flat, name)), 0.5, rtol=1e-6)
    # zero padding darkens the frame instead
    dark = np.asarray(kernels.filter_image(flat, "box_blur", pad_mode="constant"))
    assert dark[0, 0] == pytest.approx(0.5 * 4 / 9)


def test_filter_image_errors():
    with pytest.raises(ValueError, match="kernel='blur' is unknown; allowed: identity"):
        kernels.filter_image(np.zeros((4, 4)), "blur")
    with pytest.raises(ValueError, match="image.shape"):
        kernels.filter_image(np.zeros((1, 4, 4, 1)), "identity")
    with pytest.raises(ValueError, match="kernel.shape"):
        kernels.filter_image(np.zeros((4, 4)), np.ones((3, 3, 1)))
    with pytest.raises(ValueError, match="pad_mode"):
        kernels.filter_image(np.zeros((4, 4)), "identity", pad_mode="mirror")
