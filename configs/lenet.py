"""LeNet-5 (modern, 61,706 parameters) on Fashion-MNIST with Adam.

Command:  python -m experiments.run --config=lenet --workdir=runs/lenet
Shrunk for a smoke test:  python -m experiments.run --config=lenet:runlocal
Expected: test accuracy >= 0.90 after 10 epochs (see README for the measured figure).
"""

import ml_collections


def get_config(arg=None):
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.num_epochs = 10
    config.batch_size = 128
    config.eval_batch_size = 1000
    config.label_smoothing = 0.0
    config.progress_bar = True

    config.dataset = ml_collections.ConfigDict()
    config.dataset.name = "fashion_mnist"
    config.dataset.data_dir = ""  # empty: the Debian package's folder
    config.dataset.validation_size = 0
    config.dataset.split_seed = 0
    config.dataset.train_limit = 0  # 0: all examples
    config.dataset.test_limit = 0

    config.model = ml_collections.ConfigDict()
    config.model.name = "lenet5"

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "constant"
    config.optimizer.weight_decay = 0.0

    if arg == "runlocal":
        config.num_epochs = 1
        config.dataset.train_limit = 2048
        config.dataset.test_limit = 1000
    elif arg not in (None, ""):
        raise ValueError(f"config argument {arg!r} is unknown for lenet; allowed: runlocal")
    return config
