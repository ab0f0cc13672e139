"""Train state, pure steps, the ``train_and_evaluate`` loop, optimizers and metrics."""

from cnnjax.training.train import train_and_evaluate

__all__ = ["train_and_evaluate"]
