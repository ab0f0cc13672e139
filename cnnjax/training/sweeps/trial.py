"""One trial: train (or skip when finished) into its folder, then record what the sweep needs to collect it.

Besides the run's own files (``config.json``, ``metrics.jsonl``, ``summary.json``, checkpoints) a trial's
folder holds ``sweep_trial.json``: its name, index, overrides (seed included), point, FLOPs per example.
"""

from __future__ import annotations

import os

from cnnjax.training.metrics import write_json

TRIAL_FILE = "sweep_trial.json"


def finished_summary(config, workdir: str) -> dict | None:
    """The saved summary of a finished run of ``config`` in ``workdir``, else None (raises on another config)."""
    from cnnjax.training.run_identity import finished_summary as finished

    return finished(config, workdir)


def flops_per_example(config) -> int:
    """FLOPs of one forward pass of the config's model on one image (``cnnjax.models.summary``)."""
    from cnnjax.data.sources import get_dataset
    from cnnjax.models.summary import summarize
    from cnnjax.training.train import build_model

    dataset = get_dataset(config.dataset)
    return int(summarize(build_model(config, dataset.num_classes), tuple(dataset.image_shape)).total_flops)


def trial_record(meta: dict, config) -> dict:
    """``sweep_trial.json``'s content: ``meta`` (name, index, overrides, point, seed) plus FLOPs per example."""
    return {**meta, "flops_per_example": flops_per_example(config)}


def write_trial_record(workdir: str, record: dict) -> None:
    write_json(os.path.join(workdir, TRIAL_FILE), record)


def run_trial(config, workdir: str, meta: dict) -> dict:
    """Train ``config`` in ``workdir`` unless it holds the finished run; write ``sweep_trial.json``; the summary.

    Never calls ``jax.distributed.initialize()``: a trial is one process (also as a submitit job).
    """
    from cnnjax.training.train import train_and_evaluate

    summary = finished_summary(config, workdir)
    if summary is None:
        summary = train_and_evaluate(config, workdir)
    write_trial_record(workdir, trial_record(meta, config))
    return summary
