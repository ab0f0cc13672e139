"""Data sources, the input pipeline and augmentations."""

from cnnjax.data.augment import (
    all_augment_config,
    channel_mean_std,
    default_augment_config,
    make_augmentation,
    normalize,
    save_augmentation_grid,
    scale_images,
    standard_augment_config,
)
from cnnjax.data.folder import CorruptImageError, ImageFolder, load_image
from cnnjax.data.idx import IdxFormatError, read_idx, write_idx
from cnnjax.data.pipeline import eval_batches, steps_per_epoch, train_batches
from cnnjax.data.sources import ArraySource, Dataset, Subset, digits_dataset, get_dataset, materialize

__all__ = [
    "ArraySource", "CorruptImageError", "Dataset", "IdxFormatError", "ImageFolder", "Subset",
    "all_augment_config", "channel_mean_std", "default_augment_config", "digits_dataset", "eval_batches",
    "get_dataset", "load_image", "make_augmentation", "materialize", "normalize", "read_idx",
    "save_augmentation_grid", "scale_images", "standard_augment_config", "steps_per_epoch", "train_batches",
    "write_idx",
]
