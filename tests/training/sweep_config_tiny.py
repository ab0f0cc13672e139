"""A tiny sweep for the sweep tests: LeNet-5 on the synthetic data set, 2 conv variants x 2 seeds, one epoch
(32 steps of 16 images, a checkpoint every 4), each trial a few seconds.

Arg ``submitit``: one variant x 2 seeds; ``bad_*``: sweeps that must be refused before training.
"""

from configs import _hyper as hyper
from configs._base import base_config


def get_config(arg=None):
    config = base_config()
    config.dataset.name = "synthetic"
    config.num_epochs = 1
    config.batch_size = 16
    config.eval_batch_size = 64
    config.checkpoint_every_steps = 4
    config.progress_bar = False
    config.tensorboard = False
    config.model.name = "lenet5"
    config.model.kwargs.conv = "standard"
    config.sweep = hyper.product(hyper.sweep("model.kwargs.conv", ["standard", "dilated:2"]), hyper.seeds(2))
    if arg == "submitit":
        config.sweep = hyper.product(hyper.sweep("model.kwargs.conv", ["standard"]), hyper.seeds(2))
    elif arg:
        raise ValueError(f"config argument {arg!r} is unknown for sweep_config_tiny; allowed: submitit")
    return config
