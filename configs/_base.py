"""Defaults shared by every experiment config; each config overrides what it changes."""

import ml_collections

from cnnjax.data.augment import default_augment_config


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.num_epochs = 10
    config.batch_size = 128
    config.eval_batch_size = 1000
    config.label_smoothing = 0.0
    config.ema_decay = 0.0  # > 0 keeps an exponential moving average of the weights
    config.eval_with_ema = False
    config.mixed_precision = ""  # "" (float32) or "bfloat16": bf16 compute, float32 parameters
    config.progress_bar = True
    config.tensorboard = True
    config.checkpoint_every_steps = 1000  # plus one at every epoch end; 0: epoch ends only
    config.checkpoint_keep = 2
    config.frozen = ()  # top-level parameter subtrees that get no update, e.g. ("backbone",)
    config.init_from = ""  # a workdir with checkpoints, or a torchvision ResNet state_dict (.pth)

    config.dataset = ml_collections.ConfigDict()
    config.dataset.name = "fashion_mnist"
    config.dataset.data_dir = ""  # empty: the default folder of the data set
    config.dataset.validation_size = 0  # examples held out of the training split for validation
    config.dataset.split_seed = 0
    config.dataset.train_limit = 0  # 0: all examples
    config.dataset.test_limit = 0
    config.dataset.num_threads = 0  # grain threads decoding images (image folders, TFDS)
    config.dataset.num_workers = 0  # grain worker processes decoding images
    # Image folders (dataset.name='folder:PATH', one sub-folder per class); ignored by the other data sets.
    config.dataset.target_size = (256, 256)  # (height, width) every image is resized to
    config.dataset.color_mode = "rgb"  # grayscale | rgb | rgba
    config.dataset.interpolation = "nearest"  # Pillow resampling: nearest | bilinear | bicubic | lanczos | box | hamming
    config.dataset.validation_split = 0.0  # fraction of every class held out (also the test set without test_dir)
    config.dataset.test_dir = ""  # a folder with the same class sub-folders used as the test set
    config.dataset.skip_corrupt = False  # drop unreadable images with a warning instead of refusing to start
    config.dataset.check_images = True  # decode every image once before training (unreadable ones are named)

    config.augment = default_augment_config()  # training batches only; every transform off by default

    config.model = ml_collections.ConfigDict()
    config.model.name = "lenet5"
    config.model.kwargs = ml_collections.ConfigDict()

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"  # adam | adamw | sgd
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "constant"  # constant | cosine | warmup_cosine | step
    config.optimizer.warmup_epochs = 0
    config.optimizer.boundaries_epochs = ()
    config.optimizer.decay_factor = 0.1
    config.optimizer.weight_decay = 0.0
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = False
    config.optimizer.grad_clip_norm = 0.0
    config.optimizer.accumulate_steps = 1
    return config


def runlocal(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrink a config to a seconds-long smoke run (big_vision's "runlocal")."""
    config.num_epochs = 1
    config.dataset.train_limit = 2048
    config.dataset.test_limit = 1000
    config.dataset.validation_size = 0
    config.optimizer.warmup_epochs = 0  # no warm-up in a 16-step run
    if config.ema_decay > 0:
        config.ema_decay = 0.9  # an average over the last ~10 of the few steps, not the initial weights
    return config
