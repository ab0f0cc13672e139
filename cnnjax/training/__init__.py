"""Train state, pure steps, the ``train_and_evaluate`` loop, optimizers and metrics."""

from cnnjax.training.run_identity import (
           RESULT_NEUTRAL_FIELDS,
           ConfigMismatchError,
           config_differences,
           finished_summary,
)
from cnnjax.training.train import TrainingInterrupted, train_and_evaluate
from cnnjax.training.workdir_lock import WorkdirBusyError

__all__ = ["RESULT_NEUTRAL_FIELDS", "ConfigMismatchError", "TrainingInterrupted", "WorkdirBusyError",
           "config_differences", "finished_summary", "train_and_evaluate"]
