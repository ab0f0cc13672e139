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


def synthetic_config(**overrides):
    """The base config on the synthetic data set (512 images, batch 64: 8 steps an epoch), no bar, no
    TensorBoard; ``overrides`` are dotted fields, e.g. ``**{"optimizer.name": "sgd"}``."""
    from configs._base import base_config

    c = base_config()
    c.dataset.name = "synthetic"
    c.num_epochs, c.batch_size, c.eval_batch_size = 1, 64, 64
    c.progress_bar = c.tensorboard = False
    c.checkpoint_every_steps = 2
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


# Everything a resumed run must restore or re-create: 2 epochs of 6 steps (128 of the 512 synthetic images held
# out for validation), a checkpoint every 2 steps, all kept; an augmentation that shifts brightness by up to
# +-0.3 (the synthetic label is the brightness band, 0.1 wide: training sees much harder images than
# evaluation), label smoothing, dropout and an EMA evaluated.
SYNTHETIC_RUN = {
    "num_epochs": 2, "checkpoint_every_steps": 2, "checkpoint_keep": 100, "dataset.validation_size": 128,
    "augment.brightness": 0.3, "augment.hflip": True, "label_smoothing": 0.2, "model.kwargs": {"dropout": 0.1},
    "ema_decay": 0.5, "eval_with_ema": True, "optimizer.learning_rate": 1e-2,
}


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    """``(config, workdir, summary)`` of one finished ``train_and_evaluate`` of ``SYNTHETIC_RUN`` (read only:
    copy the workdir before changing anything in it)."""
    from cnnjax.training.train import train_and_evaluate

    config = synthetic_config(**SYNTHETIC_RUN)
    workdir = tmp_path_factory.mktemp("synthetic_run")
    summary = train_and_evaluate(config, str(workdir))
    return config, workdir, summary
