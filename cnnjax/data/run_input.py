"""The input side of one training run, built once from its config and data set: ``RunInput``.

``train.py`` asks it for the steps per epoch, this process's training batches of an (epoch, start batch)
and this process's evaluation batches of a split. Every process runs the same number of evaluation batches:
a process whose strided shard has run out gets fully masked padding batches, so collectives stay in step.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from cnnjax.data.pipeline import eval_batches, steps_per_epoch, train_batches
from cnnjax.data.sources import Dataset


@dataclasses.dataclass(frozen=True)
class RunInput:
    """A data set with the run's batch sizes (global, over every process) and decoding workers."""

    dataset: Dataset
    batch_size: int
    eval_batch_size: int
    num_threads: int = 0  # grain threads decoding images
    num_workers: int = 0  # grain worker processes decoding images

    @classmethod
    def from_config(cls, config, dataset: Dataset) -> "RunInput":
        """From ``config.batch_size``, ``config.eval_batch_size`` and ``config.dataset.num_threads/num_workers``."""
        return cls(dataset, int(config.batch_size), int(config.eval_batch_size),
                   int(config.dataset.num_threads), int(config.dataset.num_workers))

    @property
    def steps_per_epoch(self) -> int:
        """Training steps of one epoch (the last partial global batch is dropped)."""
        pc = jax.process_count()
        return steps_per_epoch(len(self.dataset.train), self.batch_size // pc, pc)

    def train_batches(self, seed: int, epoch: int, start_batch: int = 0):
        """This process's training batches of ``epoch`` from ``start_batch`` on (its share of each global batch)."""
        pc, pi = jax.process_count(), jax.process_index()
        return train_batches(self.dataset.train, self.batch_size // pc, seed=seed, epoch=epoch,
                             start_batch=start_batch, process_index=pi, process_count=pc,
                             num_threads=self.num_threads, num_workers=self.num_workers)

    def eval_batches(self, source):
        """This process's batches of every example of ``source`` (none dropped, none repeated), with ``mask``."""
        pc, pi = jax.process_count(), jax.process_index()
        local = self.eval_batch_size // pc
        num_batches = math.ceil(math.ceil(len(source) / pc) / local)
        batches = eval_batches(source, local, process_index=pi, process_count=pc, num_threads=self.num_threads,
                               num_workers=self.num_workers)
        for _ in range(num_batches):
            batch = next(batches, None)
            if batch is None:  # this process has run out: a fully masked batch keeps collectives in step
                batch = next(eval_batches(source, local))
                batch["mask"] = np.zeros_like(batch["mask"])
            yield batch
