"""Convolution-variant ablation: LeNet-5's second convolution swapped between the lectures' variants.

Command:  python -m experiments.sweep --config=conv_ablation --workdir=runs/conv_ablation
Smoke test:  python -m experiments.sweep --config=conv_ablation:runlocal
Each point is a full lenet run (same seed, same data order); results.md holds the table.
"""

from configs._base import base_config, runlocal

VARIANTS = ("standard", "separable", "grouped:2", "dilated:2", "locally_connected", "deformable")


def get_config(arg=None):
    config = base_config()
    config.model.name = "lenet5"
    config.model.kwargs.conv = "standard"
    config.num_epochs = 5
    config.sweep = [{"name": v.replace(":", ""), "overrides": {"model.kwargs.conv": v}} for v in VARIANTS]
    if arg == "runlocal":
        runlocal(config)
        config.sweep = config.sweep[:2]
        return config
    if arg not in (None, ""):
        raise ValueError(f"config argument {arg!r} is unknown for conv_ablation; allowed: runlocal")
    return config
