"""Shared test fixtures and settings."""

import os

import jax
import pytest

jax.config.update("jax_enable_x64", False)

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def fashion_mnist_dir():
    if not os.path.exists(os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")):
        pytest.fail(f"Fashion-MNIST is missing in {FASHION_MNIST_DIR}: run ./launch.sh setup")
    return FASHION_MNIST_DIR
