"""ResNet-20 (He et al. 2016, CIFAR-style, 16-32-64 widths, option-A shortcuts) on Fashion-MNIST.

Command:  python -m experiments.run --config=resnet20 --workdir=runs/resnet20
Smoke test:  python -m experiments.run --config=resnet20:runlocal
Goal: >= 0.945 test accuracy (the published table has ResNet-18 at 0.949). Best run on a GPU.
"""

from configs._base import base_config, parse_arg, runlocal


def get_config(arg=None):
    config = base_config()
    config.model.name = "resnet20"
    config.model.kwargs.conv = "standard"  # a conv variant: --config.model.kwargs.conv=separable, ...
    config.num_epochs = 40
    config.batch_size = 128
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = True
    config.optimizer.weight_decay = 5e-4
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 1
    config.augment.hflip = True
    config.augment.shift_pixels = 2
    if parse_arg(arg, "resnet20", runlocal=False).runlocal:
        runlocal(config)
    return config
