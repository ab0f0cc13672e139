"""LeNet-5 (modern, 61,706 parameters) on Fashion-MNIST with Adam (learning rate 1e-3).

Command:  python -m experiments.run --config=lenet --workdir=runs/lenet
Smoke test (seconds):  python -m experiments.run --config=lenet:runlocal
Expected: test accuracy >= 0.90 after 10 epochs (README has the measured figure and wall time).
"""

from configs._base import base_config, runlocal


def get_config(arg=None):
    config = base_config()
    config.model.name = "lenet5"
    config.num_epochs = 10
    if arg == "runlocal":
        return runlocal(config)
    if arg not in (None, ""):
        raise ValueError(f"config argument {arg!r} is unknown for lenet; allowed: runlocal")
    return config
