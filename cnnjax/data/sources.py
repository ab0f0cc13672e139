"""Random-access data sources: ``len(source)``, ``source[i] -> (image uint8 HWC, label)``.

In-memory sources also give ``get_batch(indices)`` so the pipeline can gather a whole batch at once.
``get_dataset(config.dataset)`` selects the source by ``dataset.name``.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from cnnjax.data.idx import read_idx

DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """Images ``(N, H, W, C)`` uint8 and integer labels ``(N,)`` held in memory."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.images.ndim != 4:
            raise ValueError(f"images.shape={self.images.shape} must be (N, H, W, C)")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], int(self.labels[index])

    def get_batch(self, indices):
        """Gather ``indices`` at once: ``{"image": (B, H, W, C) uint8, "label": (B,) int32}``."""
        indices = np.asarray(indices)
        return {"image": self.images[indices], "label": self.labels[indices].astype(np.int32)}

    def take(self, n: int) -> "ArraySource":
        """The first ``n`` examples."""
        return ArraySource(self.images[:n], self.labels[:n])


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The splits of one data set; ``validation`` may be None."""

    train: ArraySource
    test: ArraySource
    validation: ArraySource | None
    num_classes: int
    class_names: tuple[str, ...]


IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(data_dir: str, stem: str) -> str | None:
    for name in (stem + ".gz", stem):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            return path
    return None


def load_idx_split(data_dir: str, split: str, dataset_name: str = "fashion_mnist") -> ArraySource:
    """Read one split (``train`` or ``test``) of an MNIST-family folder of IDX files."""
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"data folder {data_dir!r} for {dataset_name} does not exist. "
            + _how_to_provide(dataset_name, data_dir)
        )
    paths = []
    for stem in IDX_FILES[split]:
        path = _find(data_dir, stem)
        if path is None:
            raise FileNotFoundError(
                f"{stem}.gz (or {stem}) is missing in {data_dir!r}. " + _how_to_provide(dataset_name, data_dir)
            )
        paths.append(path)
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{paths[0]} and {paths[1]} do not match: images {images.shape}, labels {labels.shape}"
        )
    return ArraySource(images[..., None], labels.astype(np.int32))


def _how_to_provide(dataset_name: str, data_dir: str) -> str:
    if dataset_name == "fashion_mnist":
        return (
            "Install it with `apt-get install dataset-fashion-mnist` (files land in "
            f"{DEFAULT_FASHION_MNIST_DIR}), or copy train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz into a folder and pass "
            "--config.dataset.data_dir=FOLDER."
        )
    return (
        "Copy the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into a folder and pass "
        "--config.dataset.data_dir=FOLDER."
    )


def split_validation(train: ArraySource, validation_size: int, seed: int) -> tuple[ArraySource, ArraySource | None]:
    """Hold out ``validation_size`` random training examples (a fixed permutation for ``seed``)."""
    if validation_size <= 0:
        return train, None
    if validation_size >= len(train):
        raise ValueError(f"dataset.validation_size={validation_size} must be smaller than the {len(train)} training examples")
    order = np.random.default_rng(seed).permutation(len(train))
    held, kept = np.sort(order[:validation_size]), np.sort(order[validation_size:])
    return ArraySource(train.images[kept], train.labels[kept]), ArraySource(train.images[held], train.labels[held])


def idx_dataset(data_dir: str, name: str, class_names, validation_size=0, seed=0) -> Dataset:
    train, test = load_idx_split(data_dir, "train", name), load_idx_split(data_dir, "test", name)
    train, validation = split_validation(train, validation_size, seed)
    return Dataset(train, test, validation, num_classes=len(class_names), class_names=tuple(class_names))


def synthetic_dataset(num_train=512, num_test=128, image_shape=(28, 28, 1), num_classes=10, seed=0) -> Dataset:
    """Random images whose label is encoded in their mean brightness band (learnable, for tests)."""
    rng = np.random.default_rng(seed)

    def make(n):
        labels = rng.integers(0, num_classes, n).astype(np.int32)
        base = (labels[:, None, None, None] + 0.5) * (255.0 / num_classes)
        noise = rng.normal(0, 8, (n, *image_shape))
        return ArraySource(np.clip(base + noise, 0, 255).astype(np.uint8), labels)

    names = tuple(str(i) for i in range(num_classes))
    return Dataset(make(num_train), make(num_test), None, num_classes, names)


DATASETS = ("fashion_mnist", "mnist", "synthetic")


def get_dataset(config) -> Dataset:
    """Build the data set named by ``config.name`` (see ``DATASETS``) from a ``dataset`` config."""
    name = config.name
    validation_size = int(config.get("validation_size", 0))
    seed = int(config.get("split_seed", 0))
    if name == "fashion_mnist":
        data_dir = config.get("data_dir") or DEFAULT_FASHION_MNIST_DIR
        ds = idx_dataset(data_dir, name, FASHION_MNIST_CLASSES, validation_size, seed)
    elif name == "mnist":
        if not config.get("data_dir"):
            raise ValueError("dataset.name='mnist' needs --config.dataset.data_dir=FOLDER with the four MNIST IDX files")
        ds = idx_dataset(config.data_dir, name, [str(i) for i in range(10)], validation_size, seed)
    elif name == "synthetic":
        ds = synthetic_dataset(seed=seed)
    else:
        raise ValueError(f"dataset.name={name!r} is unknown; available: {', '.join(DATASETS)}")
    limit_train, limit_test = int(config.get("train_limit", 0)), int(config.get("test_limit", 0))
    if limit_train or limit_test:
        ds = dataclasses.replace(
            ds,
            train=ds.train.take(limit_train) if limit_train else ds.train,
            test=ds.test.take(limit_test) if limit_test else ds.test,
        )
    return ds
