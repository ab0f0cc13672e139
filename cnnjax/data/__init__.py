"""Data sources, the input pipeline and augmentations."""

from cnnjax.data.augment import (
    AUGMENT_FIELDS,
    channel_mean_std,
    make_augmentation,
    normalize,
    save_augmentation_grid,
    scale_images,
)
from cnnjax.data.folder import CorruptImageError, ImageFolder, load_image
from cnnjax.data.idx import IdxFormatError, read_idx, write_idx
from cnnjax.data.pipeline import eval_batches, steps_per_epoch, train_batches
from cnnjax.data.run_input import RunInput
from cnnjax.data.sources import ArraySource, Dataset, Subset, digits_dataset, get_dataset, materialize

__all__ = [
    "AUGMENT_FIELDS", "ArraySource", "CorruptImageError", "Dataset", "IdxFormatError", "ImageFolder", "RunInput", "Subset",
    "channel_mean_std", "digits_dataset", "eval_batches",
    "get_dataset", "load_image", "make_augmentation", "materialize", "normalize", "read_idx",
    "save_augmentation_grid", "scale_images", "steps_per_epoch", "train_batches",
    "write_idx",
]
