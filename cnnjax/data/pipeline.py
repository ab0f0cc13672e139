"""The input pipeline: deterministic shuffled training batches and complete evaluation batches.

grain shuffles and batches the *indices* of a random-access source (a Feistel permutation, so the
order is a pure function of ``(seed, epoch)``); the source then gathers the whole batch at once.
The iterator state is just ``(epoch, batch_index)``: a resumed run starts from the same batch.
"""

from __future__ import annotations

import grain
import numpy as np


def _check_batch_size(batch_size: int, n: int, what: str) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive int")
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the {n} examples of the {what} data")


def _gather(source, indices):
    if hasattr(source, "get_batch"):
        return source.get_batch(indices)
    images, labels = zip(*(source[int(i)] for i in indices))
    return {"image": np.stack(images), "label": np.asarray(labels, np.int32)}


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch: a fixed function of (seed, epoch), so every epoch reshuffles."""
    return (int(seed) * 1_000_003 + int(epoch)) % (2**31 - 1)


def steps_per_epoch(num_examples: int, batch_size: int, process_count: int = 1) -> int:
    """Training batches per epoch: the last partial batch is dropped."""
    return (num_examples // process_count) // batch_size


def train_batches(
    source,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    start_batch: int = 0,
    process_index: int = 0,
    process_count: int = 1,
):
    """Yield the shuffled batches of one epoch, starting at ``start_batch``.

    The permutation depends on ``(seed, epoch)`` only; each process takes its own contiguous
    shard of the permuted indices (``process_index`` of ``process_count``), so processes partition
    the data. The last partial batch is dropped.
    """
    n = len(source)
    _check_batch_size(batch_size, n // process_count, "training")
    per_process = n // process_count
    indices = grain.MapDataset.range(n).shuffle(seed=epoch_seed(seed, epoch))
    indices = indices[process_index * per_process : (process_index + 1) * per_process]
    batches = indices.batch(batch_size, drop_remainder=True)
    for b in range(start_batch, len(batches)):
        yield _gather(source, batches[b])


def eval_batches(source, batch_size: int, *, process_index: int = 0, process_count: int = 1):
    """Yield every example exactly once, in order, in fixed-size batches.

    The last batch is padded by repeating example 0, with ``mask`` 0 for the padding, so shapes
    stay static under ``jit`` and no example is dropped.
    """
    n = len(source)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive int")
    own = np.arange(process_index, n, process_count)
    for start in range(0, len(own), batch_size):
        idx = own[start : start + batch_size]
        valid = len(idx)
        if valid < batch_size:
            idx = np.concatenate([idx, np.zeros(batch_size - valid, idx.dtype)])
        batch = _gather(source, idx)
        batch["mask"] = (np.arange(batch_size) < valid).astype(np.float32)
        yield batch
