"""Adam vs plain SGD across learning rates (seed 003: "SGD with too small a step learns slowly, with too large
a step misses the minimum; Adam adapts the step, its main hyper-parameter is the learning rate").

LeNet-5 on Fashion-MNIST, 3 epochs (a short budget: how fast each optimizer gets there), constant learning
rate, optimizer {adam, sgd (no momentum)} x learning rate {0.001, 0.01, 0.1} x 3 seeds = 18 trials; the
table gives mean ± std over seeds per (optimizer, learning rate).

Command:   python -m experiments.sweep --config=optimizer_sweep --workdir=runs/optimizer_sweep
List it:   python -m experiments.sweep --config=optimizer_sweep --dry-run
Smoke test (2 points x 2 seeds, seconds each):  python -m experiments.sweep --config=optimizer_sweep:runlocal
Measured (test accuracy, mean ± std over 3 seeds): Adam 0.001 0.875 ± 0.003, Adam 0.01 0.883 ± 0.002, Adam 0.1
diverges in 2 of 3 seeds (0.31 ± 0.37); SGD 0.001 0.680 ± 0.025, 0.01 0.803 ± 0.006, 0.1 0.868 ± 0.011.
"""

from configs import _hyper as hyper
from configs._base import base_config, parse_arg, runlocal

OPTIMIZERS = ("adam", "sgd")
LEARNING_RATES = (0.001, 0.01, 0.1)


def get_config(arg=None):
    config = base_config()
    config.model.name = "lenet5"
    config.num_epochs = 3
    config.optimizer.momentum = 0.0  # plain SGD, as in the lecture (Adam ignores it)
    config.progress_bar = False
    config.tensorboard = False
    config.sweep = hyper.product(hyper.sweep("optimizer.name", OPTIMIZERS),
                                 hyper.sweep("optimizer.learning_rate", LEARNING_RATES), hyper.seeds(3))
    if parse_arg(arg, "optimizer_sweep", runlocal=False).runlocal:
        runlocal(config)
        config.sweep = hyper.product(hyper.zip(hyper.sweep("optimizer.name", OPTIMIZERS),
                                               hyper.sweep("optimizer.learning_rate", (0.001, 0.1))), hyper.seeds(2))
    return config
