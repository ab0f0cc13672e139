"""``ImageFolder``: a random-access source over one sub-folder per class (Keras ``flow_from_directory``).

Layout (seed 003)::

    root/
      cats/  cat001.jpg  cat002.png  ...
      dogs/  dog001.jpg  ...

Semantics, as in Keras ``ImageDataGenerator.flow_from_directory``:

- ``class_indices``: the sorted names of the sub-folders -> 0, 1, 2, ... (or the order of ``classes``
  when given); labels are sparse integers (``class_mode='sparse'``).
- ``filenames``: paths relative to ``root`` ("cats/cat001.jpg"), ordered by class, then by name; sub-folders
  of a class folder are followed recursively; files that are not images (by extension) are ignored.
- Every image is decoded with Pillow, converted to ``color_mode`` ("grayscale" -> 1 channel, "rgb" -> 3,
  "rgba" -> 4; palette and RGBA images are converted, alpha is dropped for "rgb" like Keras) and resized
  to ``target_size = (height, width)`` with ``interpolation`` (Keras' default: "nearest").
- ``validation_split`` with ``subset='training'|'validation'``: within every class, the sorted files are
  permuted by ``seed`` and the first ``floor(validation_split * n_class)`` go to validation, the rest to
  training. The two subsets are disjoint, together cover every file, and are the same for the same seed
  (stratified, so the class balance is kept). Keras splits the *unshuffled* sorted files; pass
  ``seed=None`` for exactly that.

Errors are raised early and name what is wrong: a ``root`` that does not exist, a class folder without
images, a symlink cycle (or a folder reached twice through links) inside a class folder, and (at read time)
an unreadable or corrupt image file. ``check_readable()`` decodes every file once and raises naming the
unreadable ones (``get_dataset`` calls it before training); ``skip_corrupt=True`` instead decodes every
file once at construction, drops those that fail and warns with their names.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".gif", ".webp")
COLOR_MODES = {"grayscale": 1, "rgb": 3, "rgba": 4}
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


class CorruptImageError(ValueError):
    """An image file that cannot be read or decoded; the message names the file."""


class SkippedImagesWarning(UserWarning):
    """``skip_corrupt=True`` dropped unreadable image files (the message names them)."""


def _pil():
    from PIL import Image

    return Image


def load_image(path: str, target_size: tuple[int, int] | None, color_mode: str = "rgb",
               interpolation: str = "nearest") -> np.ndarray:
    """Decode one image file to uint8 ``(H, W, C)``: convert to ``color_mode``, resize to ``target_size``.

    Raises:
      CorruptImageError: the file cannot be opened or decoded (the message names it).
    """
    Image = _pil()
    try:
        with Image.open(path) as img:
            img.load()
            img = _convert(img, color_mode)
            if target_size is not None and img.size != (target_size[1], target_size[0]):
                img = img.resize((target_size[1], target_size[0]), _resample(interpolation))
            array = np.asarray(img, dtype=np.uint8)
    except CorruptImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise CorruptImageError(f"cannot read image file {path!r}: {type(e).__name__}: {e}") from e
    if array.ndim == 2:
        array = array[..., None]
    return array


def _resample(interpolation: str):
    Image = _pil()
    return {
        "nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
        "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING,
    }[interpolation]


def _convert(img, color_mode: str):
    """Pillow image of any mode -> "L", "RGB" or "RGBA" (16-bit and float images scaled to 8 bits)."""
    Image = _pil()
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    if img.mode == "P":  # palette: go through RGBA so a transparent index keeps its palette colour
        img = img.convert("RGBA")
    target = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}[color_mode]
    if img.mode != target:
        img = img.convert(target)
    return img


class ImageFolder:
    """Images in one sub-folder per class; ``len``, ``source[i] -> (uint8 (H, W, C), label)``, ``get_batch``.

    Args:
      root: folder with one sub-folder per class.
      target_size: ``(height, width)`` every image is resized to (Keras default ``(256, 256)``).
      color_mode: "grayscale", "rgb" or "rgba".
      validation_split: fraction in ``[0, 1)`` of every class held out for validation.
      subset: None (all files), "training" or "validation" (needs ``validation_split > 0``).
      seed: permutes each class before the split; ``None`` splits the sorted files like Keras.
      classes: optional list of class folder names (their order gives the indices); default: all
        sub-folders, sorted.
      interpolation: Pillow resampling used by the resize.
      skip_corrupt: decode every file now, drop the unreadable ones with a warning (default: raise
        ``CorruptImageError`` naming the file when it is read).
    """

    def __init__(self, root, target_size: Sequence[int] = (256, 256), color_mode: str = "rgb",
                 validation_split: float = 0.0, subset: str | None = None, seed: int | None = 0,
                 classes: Sequence[str] | None = None, interpolation: str = "nearest",
                 skip_corrupt: bool = False):
        root = os.fspath(root)
        if color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode={color_mode!r} is not allowed; allowed: {', '.join(COLOR_MODES)}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation={interpolation!r} is not allowed; allowed: {', '.join(INTERPOLATIONS)}")
        target_size = tuple(int(s) for s in target_size)
        if len(target_size) != 2 or min(target_size) < 1:
            raise ValueError(f"target_size={target_size!r} must be (height, width) with positive ints")
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"validation_split={validation_split!r} must be in [0, 1)")
        if subset not in (None, "training", "validation"):
            raise ValueError(f"subset={subset!r} is not allowed; allowed: None, 'training', 'validation'")
        if subset is not None and validation_split == 0.0:
            raise ValueError(f"subset={subset!r} needs validation_split > 0 (got {validation_split})")
        if not os.path.exists(root):
            raise FileNotFoundError(f"image folder root={root!r} does not exist")
        if not os.path.isdir(root):
            raise NotADirectoryError(f"image folder root={root!r} is not a directory")

        self.root = root
        self.target_size = target_size
        self.color_mode = color_mode
        self.interpolation = interpolation
        self.validation_split = float(validation_split)
        self.subset = subset
        self.seed = seed

        if classes is None:
            classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
            if not classes:
                raise ValueError(f"image folder root={root!r} has no class sub-folders (one folder per class expected)")
        else:
            classes = list(classes)
            for c in classes:
                if not os.path.isdir(os.path.join(root, c)):
                    raise FileNotFoundError(f"class folder {c!r} does not exist in root={root!r}")
        self.class_indices = {c: i for i, c in enumerate(classes)}

        filenames, labels = [], []
        for c in classes:
            files = _list_images(root, c)
            if not files:
                raise ValueError(f"class folder {os.path.join(root, c)!r} contains no image files "
                                 f"(extensions: {', '.join(IMAGE_EXTENSIONS)})")
            files = _select_subset(files, self.validation_split, subset, seed, self.class_indices[c])
            filenames += files
            labels += [self.class_indices[c]] * len(files)
        self.filenames = filenames
        self.classes = np.asarray(labels, np.int32)  # Keras' name: the label of every file
        if skip_corrupt:
            self._drop_corrupt()

    @property
    def labels(self) -> np.ndarray:
        """The integer label of every file (same as ``classes``)."""
        return self.classes

    @property
    def num_classes(self) -> int:
        return len(self.class_indices)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.class_indices)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)`` of every image this source returns."""
        return (*self.target_size, COLOR_MODES[self.color_mode])

    @property
    def filepaths(self) -> list[str]:
        """Absolute paths of ``filenames``."""
        return [os.path.join(self.root, f) for f in self.filenames]

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, index: int):
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index={index} out of range for {len(self)} images")
        path = os.path.join(self.root, self.filenames[index])
        return load_image(path, self.target_size, self.color_mode, self.interpolation), int(self.classes[index])

    def get_batch(self, indices):
        """Decode ``indices``: ``{"image": (B, H, W, C) uint8, "label": (B,) int32}``."""
        images = [self[int(i)][0] for i in np.asarray(indices)]
        return {"image": np.stack(images), "label": self.classes[np.asarray(indices)].astype(np.int32)}

    def take(self, n: int) -> "ImageFolder":
        """The first ``n`` files (a shallow copy)."""
        new = object.__new__(ImageFolder)
        new.__dict__.update(self.__dict__)
        new.filenames, new.classes = self.filenames[:n], self.classes[:n]
        return new

    def unreadable_files(self, max_workers: int | None = None) -> list[tuple[int, str]]:
        """Decode every file (threads; Pillow releases the GIL): ``(index, "name (reason)")`` of those that fail."""

        def failure(i):
            try:
                self[i]
                return None
            except CorruptImageError as e:
                return i, f"{self.filenames[i]} ({e.__cause__ or e})"

        workers = max_workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:
            return [r for r in pool.map(failure, range(len(self))) if r is not None]

    def check_readable(self, max_workers: int | None = None) -> None:
        """Raise ``CorruptImageError`` naming the files that cannot be decoded (every file is decoded once)."""
        bad = self.unreadable_files(max_workers)
        if bad:
            shown = "; ".join(b for _, b in bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise CorruptImageError(f"{len(bad)} of {len(self)} image file(s) in {self.root!r} cannot be read: "
                                    f"{shown}. Fix or remove them, or set dataset.skip_corrupt=True to skip them")

    def _drop_corrupt(self) -> None:
        failures = self.unreadable_files()
        if failures:
            bad = [b for _, b in failures]
            drop = {i for i, _ in failures}
            keep = [i for i in range(len(self)) if i not in drop]
            warnings.warn(SkippedImagesWarning(f"skipped {len(bad)} unreadable image file(s) in {self.root!r}: "
                                               + "; ".join(bad)), stacklevel=3)
            self.filenames = [self.filenames[i] for i in keep]
            self.classes = self.classes[keep]
            if not len(self.filenames):
                raise ValueError(f"no readable image is left in {self.root!r}")

    def __repr__(self) -> str:
        return (f"ImageFolder(root={self.root!r}, {len(self)} images, {self.num_classes} classes, "
                f"target_size={self.target_size}, color_mode={self.color_mode!r}, subset={self.subset!r})")


def _list_images(root: str, class_name: str) -> list[str]:
    """Image files under ``root/class_name`` (recursively, following links), relative to ``root``, sorted.

    A folder reached a second time (a symlink cycle, or two links to one folder) is an error: following it
    would list the same files again and again.
    """
    out = []
    base = os.path.join(root, class_name)
    seen = {}  # real path of every folder walked -> the path it was reached by
    for dirpath, dirnames, files in os.walk(base, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            kind = "a symlink cycle" if (real == os.path.commonpath([real, os.path.realpath(
                os.path.dirname(dirpath))])) else "a second link to one folder"
            raise ValueError(f"image folder {dirpath!r} is {seen[real]!r} again ({kind}); remove the link so every "
                             "image is listed once")
        seen[real] = dirpath
        dirnames.sort()
        for f in files:
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
                out.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(out)


def _select_subset(files: list[str], split: float, subset: str | None, seed: int | None, class_index: int) -> list[str]:
    if subset is None or split == 0.0:
        return files
    order = np.arange(len(files))
    if seed is not None:
        order = np.random.default_rng([int(seed), class_index]).permutation(len(files))
    n_val = int(split * len(files))
    chosen = order[:n_val] if subset == "validation" else order[n_val:]
    return [files[i] for i in sorted(chosen)]
