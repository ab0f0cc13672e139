"""Random-access data sources: ``len(source)``, ``source[i] -> (image uint8 HWC, label)``.

In-memory sources also give ``get_batch(indices)`` so the pipeline can gather a whole batch at once.
``get_dataset(config.dataset)`` selects the source by ``dataset.name``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Protocol

import numpy as np

from cnnjax.data.folder import ImageFolder
from cnnjax.data.idx import read_idx

DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


class Source(Protocol):
    """What the pipeline needs from a data source (``get_batch`` is optional but faster)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]: ...

    @property
    def image_shape(self) -> tuple[int, ...]: ...


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

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``(H, W, C)`` of every image."""
        return tuple(self.images.shape[1:])

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
    """The splits of one data set; ``validation`` may be None. Every split is a random-access source."""

    train: Source
    test: Source
    validation: Source | None
    num_classes: int
    class_names: tuple[str, ...]

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``(H, W, C)`` of the training images."""
        return tuple(self.train.image_shape)


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


class Subset:
    """The examples ``indices`` of another random-access source (no copy)."""

    def __init__(self, source, indices):
        self.source = source
        self.indices = np.asarray(indices, np.int64)
        if self.indices.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {self.indices.shape}")
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(source)):
            raise ValueError(f"indices must lie in [0, {len(source)}) for a source of {len(source)} examples")

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.source.image_shape)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.source[int(self.indices[int(index)])]

    def get_batch(self, indices):
        return gather_batch(self.source, self.indices[np.asarray(indices)])

    def take(self, n: int) -> "Subset":
        return Subset(self.source, self.indices[:n])


def take(source, n: int):
    """The first ``n`` examples of any source."""
    if hasattr(source, "take"):
        return source.take(n)
    return Subset(source, np.arange(min(n, len(source))))


def materialize(source) -> ArraySource:
    """Read every example of ``source`` into memory (an ``ArraySource``)."""
    if isinstance(source, ArraySource):
        return source
    batches = [gather_batch(source, np.arange(s, min(s + 1024, len(source)))) for s in range(0, len(source), 1024)]
    return ArraySource(np.concatenate([b["image"] for b in batches]), np.concatenate([b["label"] for b in batches]))


def gather_batch(source, indices) -> dict:
    """Examples ``indices`` of ``source`` as ``{"image": (B, H, W, C) uint8, "label": (B,) int32}``: the source's
    own ``get_batch`` when it has one (one fancy-indexing gather), else its examples stacked one by one."""
    if hasattr(source, "get_batch"):
        return source.get_batch(indices)
    images, labels = zip(*(source[int(i)] for i in indices))
    return {"image": np.stack(images), "label": np.asarray(labels, np.int32)}


def split_validation(train, validation_size: int, seed: int):
    """Hold out ``validation_size`` random training examples (a fixed permutation for ``seed``).

    Returns ``(train, validation)``; in-memory sources are sliced, others wrapped in ``Subset``.
    """
    if validation_size <= 0:
        return train, None
    if validation_size >= len(train):
        raise ValueError(f"dataset.validation_size={validation_size} must be smaller than the {len(train)} training examples")
    order = np.random.default_rng(seed).permutation(len(train))
    held, kept = np.sort(order[:validation_size]), np.sort(order[validation_size:])
    if isinstance(train, ArraySource):
        return ArraySource(train.images[kept], train.labels[kept]), ArraySource(train.images[held], train.labels[held])
    return Subset(train, kept), Subset(train, held)


def idx_dataset(data_dir: str, name: str, class_names) -> Dataset:
    """The train and test splits of an IDX data set (``get_dataset`` holds out the validation examples)."""
    train, test = load_idx_split(data_dir, "train", name), load_idx_split(data_dir, "test", name)
    return Dataset(train, test, None, num_classes=len(class_names), class_names=tuple(class_names))


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


DIGITS_TEST_SIZE = 360


def digits_dataset() -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, no download), as uint8 ``(8, 8, 1)``.

    Pixel values 0..16 are scaled to 0..255 (``round(v * 255 / 16)``). There is no official split: a fixed
    permutation (seed 0) puts 360 images (20%) in ``test`` and 1,437 in ``train``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(labels))
    test, train = np.sort(order[:DIGITS_TEST_SIZE]), np.sort(order[DIGITS_TEST_SIZE:])
    return Dataset(ArraySource(images[train], labels[train]), ArraySource(images[test], labels[test]), None,
                   num_classes=10, class_names=tuple(str(i) for i in range(10)))


def folder_dataset(root: str, config) -> Dataset:
    """``folder:ROOT``: training images from ``ROOT`` (one sub-folder per class, at least 2).

    Every image is decoded once here (``dataset.check_images``, default True), so an unreadable file is
    reported before training, not when it is first drawn; ``dataset.skip_corrupt=True`` drops such files
    with a warning instead.

    ``dataset.validation_split > 0`` holds out that fraction of every class as ``validation``
    (Keras ``subset='validation'``). ``test`` is ``dataset.test_dir`` (same class folders) when given,
    otherwise the validation subset; with neither, a ``ValueError``.
    """
    kwargs = dict(
        target_size=tuple(config.get("target_size", (256, 256))),
        color_mode=config.get("color_mode", "rgb"),
        interpolation=config.get("interpolation", "nearest"),
        skip_corrupt=bool(config.get("skip_corrupt", False)),
    )
    split = float(config.get("validation_split", 0.0))
    seed = int(config.get("split_seed", 0))
    test_dir = config.get("test_dir", "") or ""
    if split > 0:
        train = ImageFolder(root, validation_split=split, subset="training", seed=seed, **kwargs)
        validation = ImageFolder(root, validation_split=split, subset="validation", seed=seed,
                                 classes=list(train.class_indices), **kwargs)
    else:
        train, validation = ImageFolder(root, **kwargs), None
    if test_dir:
        test = ImageFolder(test_dir, **kwargs)
        if list(test.class_indices) != list(train.class_indices):
            raise ValueError(f"dataset.test_dir={test_dir!r} has classes {list(test.class_indices)}, but the training "
                             f"folder {root!r} has {list(train.class_indices)}; they must be the same")
    elif validation is not None:
        test = validation
    else:
        raise ValueError(f"dataset.name='folder:{root}' needs a test set: set dataset.validation_split > 0 "
                         "(the validation subset is then also the test set) or dataset.test_dir=FOLDER")
    if train.num_classes < 2:
        raise ValueError(f"dataset.name='folder:{root}' has {train.num_classes} class folder(s) "
                         f"{list(train.class_names)}; a classifier needs at least 2 (one sub-folder per class)")
    if config.get("check_images", True) and not kwargs["skip_corrupt"]:
        for split in {id(s): s for s in (train, validation, test) if s is not None}.values():
            split.check_readable(int(config.get("num_threads", 0)) or None)
    return Dataset(train, test, validation, train.num_classes, train.class_names)


def tfds_dataset(name: str, config) -> Dataset:
    """``tfds:NAME``: a prepared TFDS data set (``train`` and ``test`` splits, ``validation`` if it has one)."""
    from cnnjax.data import tfds_source

    builder = tfds_source.tfds_builder(name, config.get("data_dir") or None)
    splits = builder.info.splits
    if "train" not in splits:
        raise ValueError(f"TFDS data set {name!r} has no 'train' split; splits: {list(splits)}")
    test_split = "test" if "test" in splits else None
    if test_split is None:
        raise ValueError(f"TFDS data set {name!r} has no 'test' split; splits: {list(splits)}")
    train = tfds_source.TfdsSource(builder, "train")
    test = tfds_source.TfdsSource(builder, test_split)
    validation = tfds_source.TfdsSource(builder, "validation") if "validation" in splits else None
    names = tfds_source.class_names(builder)
    return Dataset(train, test, validation, len(names), names)


def labels_of(source) -> np.ndarray | None:
    """Every label of ``source`` when it holds them in memory (``ArraySource``, ``ImageFolder``, ``Subset``)."""
    if isinstance(source, Subset):
        labels = labels_of(source.source)
        return None if labels is None else labels[source.indices]
    labels = getattr(source, "labels", None)
    return None if labels is None else np.asarray(labels)


def check_labels(ds: Dataset, name: str) -> None:
    """Every label of every split lies in ``[0, num_classes)`` (a ``ValueError`` naming the first that does not).

    Sources without labels in memory (TFDS, whose ``ClassLabel`` already guarantees the range) are skipped.
    """
    for split, source in (("train", ds.train), ("validation", ds.validation), ("test", ds.test)):
        labels = None if source is None else labels_of(source)
        if labels is None or not len(labels):
            continue
        bad = np.flatnonzero((labels < 0) | (labels >= ds.num_classes))
        if len(bad):
            raise ValueError(f"dataset.name={name!r}: the {split} split has {len(bad)} label(s) outside "
                             f"[0, {ds.num_classes}) for its {ds.num_classes} classes, the first "
                             f"{int(labels[bad[0]])} at example {int(bad[0])}")


DATASETS = ("fashion_mnist", "mnist", "digits", "folder:PATH", "tfds:NAME", "synthetic")


def get_dataset(config) -> Dataset:
    """Build the data set named by ``config.name`` from a ``dataset`` config.

    Names: ``fashion_mnist`` (IDX files of the Debian package or ``data_dir``), ``mnist`` (IDX files in
    ``data_dir``), ``digits`` (scikit-learn 8x8), ``folder:PATH`` (class folders, see ``folder_dataset``),
    ``tfds:NAME`` (a prepared TFDS data set in ``data_dir`` or ``~/tensorflow_datasets``), ``synthetic``.
    Common fields: ``validation_size`` (held out from train when the set has no validation split yet),
    ``split_seed``, ``train_limit``/``test_limit`` (0 = all), ``cache`` (read lazy sources into memory).
    """
    name = str(config.name)
    validation_size = int(config.get("validation_size", 0))
    seed = int(config.get("split_seed", 0))
    if name == "fashion_mnist":
        data_dir = config.get("data_dir") or DEFAULT_FASHION_MNIST_DIR
        ds = idx_dataset(data_dir, name, FASHION_MNIST_CLASSES)
    elif name == "mnist":
        if not config.get("data_dir"):
            raise ValueError("dataset.name='mnist' needs --config.dataset.data_dir=FOLDER with the four MNIST IDX "
                             "files (or use dataset.name='tfds:mnist' with a prepared TFDS copy)")
        ds = idx_dataset(config.data_dir, name, [str(i) for i in range(10)])
    elif name == "digits":
        ds = digits_dataset()
    elif name == "synthetic":
        ds = synthetic_dataset(seed=seed)
    elif name.startswith("folder:"):
        root = name[len("folder:"):]
        if not root:
            raise ValueError("dataset.name='folder:' needs a path, e.g. 'folder:/data/cats_and_dogs/train'")
        ds = folder_dataset(root, config)
    elif name.startswith("tfds:"):
        if not name[len("tfds:"):]:
            raise ValueError("dataset.name='tfds:' needs a TFDS name, e.g. 'tfds:mnist'")
        ds = tfds_dataset(name[len("tfds:"):], config)
    else:
        raise ValueError(f"dataset.name={name!r} is unknown; available: {', '.join(DATASETS)}")
    if validation_size > 0:
        if ds.validation is not None:
            warnings.warn(f"dataset.validation_size={validation_size} ignored: {name!r} already has a validation split",
                          stacklevel=2)
        else:
            train, validation = split_validation(ds.train, validation_size, seed)
            ds = dataclasses.replace(ds, train=train, validation=validation)
    check_labels(ds, name)
    limit_train, limit_test = int(config.get("train_limit", 0)), int(config.get("test_limit", 0))
    if limit_train or limit_test:
        ds = dataclasses.replace(
            ds,
            train=take(ds.train, limit_train) if limit_train else ds.train,
            test=take(ds.test, limit_test) if limit_test else ds.test,
        )
    if config.get("cache", False):
        ds = dataclasses.replace(
            ds, train=materialize(ds.train), test=materialize(ds.test),
            validation=None if ds.validation is None else materialize(ds.validation),
        )
    return ds
