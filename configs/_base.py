"""Defaults shared by every experiment config; each config overrides what it changes.

Pure data: nothing here imports ``cnnjax`` (loading a config pulls in no JAX). This file is the one place
where a config field's default is written; the library reads the fields it is given.
"""

import ml_collections


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
    config.loss = "softmax_cross_entropy"  # or "sigmoid_binary_cross_entropy": seed 001's logistic outputs + BCE
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

    config.augment = augment_config()  # training batches only; every transform off by default

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


def augment_config(preset: str = "off") -> ml_collections.ConfigDict:
    """``config.augment``: "off" (every transform off), "standard" or "all" (see ``cnnjax.data.augment``).

    Fields (all per image, drawn independently; ``cnnjax.data.augment.AUGMENT_FIELDS`` lists the same names):
      hflip, vflip: flip left-right / up-down with probability 1/2.
      rotation_degrees: angle ~ U(-d, d) degrees.
      shift_pixels: translation ~ U(-s, s) pixels along each axis.
      zoom: ``(lo, hi)``: scale factors ~ U(lo, hi), drawn *independently* for height and width
        (stretch/compress); ``> 1`` enlarges the content. ``(1, 1)`` is off. ``zoom_keep_aspect``: one
        factor for both axes.
      fill_mode, fill_value: how the warp fills pixels from outside the image ("nearest" edge pixel,
        like Keras, or "constant" ``fill_value``).
      brightness: delta ~ U(-b, b) added to every pixel.
      contrast: factor ~ U(1 - c, 1 + c) applied around each channel's mean.
      blur_prob, blur_sigma: with that probability a Gaussian blur, sigma ~ U(blur_sigma).
      sharpen_prob, sharpen_strength: with that probability ``x + a (K*x - x)`` with the seeds' 3x3
        sharpen kernel K and ``a ~ U(sharpen_strength)`` (``a = 1`` is exactly K).
      noise_std: additive Gaussian noise N(0, noise_std^2).
      erase_prob, erase_area, erase_ratio, erase_fill: random erasing (Zhong et al. 2017): with that
        probability a rectangle with area fraction ~ U(erase_area) and aspect ratio ~ logU(erase_ratio)
        is filled with uniform noise at 8-bit resolution ("random") or zeros ("zero").

    "standard" is a light preset for small grayscale images (the Fashion-MNIST benchmark's "default
    augmentations"): horizontal flip, rotation +-10 degrees, shift +-2 px, zoom 0.9..1.1 per axis, brightness
    +-0.1, contrast +-10%, random erasing with probability 0.25. "all" adds vertical flips, blur, sharpening
    and noise (for the grid picture and the worst-case benchmark).
    """
    if preset not in ("off", "standard", "all"):
        raise ValueError(f"augment preset={preset!r} is unknown; allowed: off, standard, all")
    c = ml_collections.ConfigDict()
    c.hflip = False
    c.vflip = False
    c.rotation_degrees = 0.0
    c.shift_pixels = 0.0
    c.zoom = (1.0, 1.0)
    c.zoom_keep_aspect = False
    c.fill_mode = "nearest"
    c.fill_value = 0.0
    c.brightness = 0.0
    c.contrast = 0.0
    c.blur_prob = 0.0
    c.blur_sigma = (0.5, 1.2)
    c.sharpen_prob = 0.0
    c.sharpen_strength = (0.3, 1.0)
    c.noise_std = 0.0
    c.erase_prob = 0.0
    c.erase_area = (0.02, 0.2)
    c.erase_ratio = (0.3, 3.3)
    c.erase_fill = "random"
    if preset in ("standard", "all"):
        c.hflip = True
        c.rotation_degrees = 10.0
        c.shift_pixels = 2.0
        c.zoom = (0.9, 1.1)
        c.brightness = 0.1
        c.contrast = 0.1
        c.erase_prob = 0.25
    if preset == "all":
        c.vflip = True
        c.blur_prob = 0.3
        c.sharpen_prob = 0.3
        c.noise_std = 0.03
    return c


def _parse_value(name, text, default):
    if isinstance(default, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"config argument {name}={text!r} must be true or false")
    try:
        return type(default)(text)
    except ValueError:
        raise ValueError(f"config argument {name}={text!r} must be of type {type(default).__name__}") from None


def parse_arg(arg, config_name: str, positional: str = "", **spec) -> ml_collections.ConfigDict:
    """The ``get_config(arg)`` string -> its fields (big_vision's ``parse_arg``).

    ``spec`` gives each accepted name with its default (its type converts the text). ``arg`` is
    ``"name=value,name2=value2"``; a bare word naming a bool field sets it True (``"runlocal"``); a bare
    value of anything else goes to the ``positional`` field (``resnet50_transfer:/data/cats,runlocal``).
    Unknown names are listed once, in one ValueError.
    """
    args = ml_collections.ConfigDict(dict(spec))
    unknown = []
    for item in (arg or "").split(","):
        if not item:
            continue
        name, has_value, text = item.partition("=")
        if not has_value:
            if isinstance(spec.get(name), bool):
                args[name] = True
                continue
            name, text = positional, item
        if name not in spec:
            unknown.append(name if has_value else item)
            continue
        args[name] = _parse_value(name, text, spec[name])
    if unknown:
        allowed = ", ".join(spec) or "no arguments"
        raise ValueError(f"config argument(s) {', '.join(map(repr, unknown))} unknown for {config_name}; "
                         f"allowed: {allowed}")
    return args


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
