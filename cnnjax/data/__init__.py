"""Data sources, the input pipeline and augmentations."""

from cnnjax.data.idx import IdxFormatError, read_idx, write_idx
from cnnjax.data.pipeline import eval_batches, steps_per_epoch, train_batches
from cnnjax.data.sources import ArraySource, Dataset, get_dataset

__all__ = [
    "ArraySource", "Dataset", "IdxFormatError", "eval_batches", "get_dataset", "read_idx",
    "steps_per_epoch", "train_batches", "write_idx",
]
