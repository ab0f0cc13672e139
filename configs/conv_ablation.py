"""Convolution-variant ablation (seed 004: sharing vs locality vs grouping): LeNet-5's second convolution
swapped between eight variants, each trained with three seeds; the table gives mean ± std over seeds.

Command:   python -m experiments.sweep --config=conv_ablation --workdir=runs/conv_ablation
List it:   python -m experiments.sweep --config=conv_ablation --dry-run
Smoke test (2 variants x 2 seeds, seconds each):  python -m experiments.sweep --config=conv_ablation:runlocal
Results: ``DIR/results.md`` (mean ± std per variant), ``results.csv``, ``accuracy_vs_params.png``,
``accuracy_vs_flops.png``, ``learning_curves.png``. 24 trials of 10 epochs (Adam 1e-3) on Fashion-MNIST:
1 h 11 min on two idle CPU cores (2 workers, README), 61% of it in the two deformable variants.
"""

from configs import _hyper as hyper
from configs._base import base_config, parse_arg, runlocal

VARIANTS = ("standard", "depthwise", "separable", "grouped:2", "dilated:2", "deformable", "deformable_v2",
            "locally_connected")


def get_config(arg=None):
    config = base_config()
    config.model.name = "lenet5"
    config.model.kwargs.conv = "standard"
    config.num_epochs = 10
    config.progress_bar = False
    config.tensorboard = False
    config.sweep = hyper.product(hyper.sweep("model.kwargs.conv", VARIANTS), hyper.seeds(3))
    if parse_arg(arg, "conv_ablation", runlocal=False).runlocal:
        runlocal(config)
        config.sweep = hyper.product(hyper.sweep("model.kwargs.conv", ("standard", "dilated:2")), hyper.seeds(2))
    return config
