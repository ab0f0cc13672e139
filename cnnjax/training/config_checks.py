"""Range checks of a run's config, done before any data is read or anything is written.

Each failure is one ``ValueError``/``TypeError`` line naming the field, the value and what is allowed.
The optimizer's name, schedule and learning rate are checked by ``make_optimizer``, the augmentation
fields by ``make_augmentation``, the model's keyword arguments by the model; this module checks the rest,
and ``check_dataset`` checks what can only be known once the data set is loaded.
"""

from __future__ import annotations

import numbers

from cnnjax.training.steps import get_loss

COLOR_MODES = ("grayscale", "rgb", "rgba")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _int(field: str, value, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{field}={value!r} must be an int >= {minimum}")


def _number(field: str, value, lo: float, hi: float | None = None, hi_open: bool = True) -> None:
    if hi is None:
        ok = _is_number(value) and value >= lo
        allowed = f">= {lo}"
    else:
        ok = _is_number(value) and lo <= value and (value < hi if hi_open else value <= hi)
        allowed = f"in [{lo}, {hi}{')' if hi_open else ']'}"
    if not ok:
        raise ValueError(f"{field}={value!r} must be a number {allowed}")


def _bool(field: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{field}={value!r} must be True or False")


def _str(field: str, value) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{field}={value!r} must be a string")


def _choice(field: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is not allowed; allowed: {', '.join(repr(a) for a in allowed)}")


def check_config(config) -> None:
    """Check every numeric and flag field of a training config built from ``configs._base.base_config()``."""
    _int("seed", config.seed, 0)
    _int("num_epochs", config.num_epochs, 1)
    _int("batch_size", config.batch_size, 1)
    _int("eval_batch_size", config.eval_batch_size, 1)
    get_loss(config.loss)  # a one-line ValueError for an unknown loss
    _number("label_smoothing", config.label_smoothing, 0.0, 1.0)
    _number("ema_decay", config.ema_decay, 0.0, 1.0)
    _bool("eval_with_ema", config.eval_with_ema)
    if config.eval_with_ema and not config.ema_decay > 0:
        raise ValueError(f"eval_with_ema=True needs ema_decay > 0 (got ema_decay={config.ema_decay!r}): "
                         "there is no moving average to evaluate")
    _bool("progress_bar", config.progress_bar)
    _bool("tensorboard", config.tensorboard)
    _int("checkpoint_every_steps", config.checkpoint_every_steps, 0)
    _int("checkpoint_keep", config.checkpoint_keep, 1)
    frozen = config.frozen
    if not isinstance(frozen, (tuple, list)) or not all(isinstance(f, str) for f in frozen):
        raise TypeError(f"frozen={frozen!r} must be a tuple of parameter subtree names")
    _str("init_from", config.init_from)

    d = config.dataset
    _str("dataset.name", d.name)
    _str("dataset.data_dir", d.data_dir)
    for field in ("validation_size", "split_seed", "train_limit", "test_limit", "num_threads", "num_workers"):
        _int(f"dataset.{field}", d[field], 0)
    _number("dataset.validation_split", d.validation_split, 0.0, 1.0)
    size = d.target_size
    if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(_is_int(s) and s >= 1 for s in size):
        raise ValueError(f"dataset.target_size={size!r} must be (height, width), two ints >= 1")
    _choice("dataset.color_mode", d.color_mode, COLOR_MODES)
    _choice("dataset.interpolation", d.interpolation, INTERPOLATIONS)
    _str("dataset.test_dir", d.test_dir)
    _bool("dataset.skip_corrupt", d.skip_corrupt)
    _bool("dataset.check_images", d.check_images)

    o = config.optimizer
    _number("optimizer.weight_decay", o.weight_decay, 0.0)
    _number("optimizer.momentum", o.momentum, 0.0, 1.0)
    _bool("optimizer.nesterov", o.nesterov)
    _number("optimizer.grad_clip_norm", o.grad_clip_norm, 0.0)
    _int("optimizer.accumulate_steps", o.accumulate_steps, 1)
    _int("optimizer.warmup_epochs", o.warmup_epochs, 0)
    _number("optimizer.decay_factor", o.decay_factor, 0.0)
    boundaries = o.boundaries_epochs
    if not isinstance(boundaries, (tuple, list)) or not all(_is_int(b) and b >= 0 for b in boundaries):
        raise ValueError(f"optimizer.boundaries_epochs={boundaries!r} must be a tuple of epoch numbers >= 0")


def check_dataset(config, dataset) -> None:
    """Checks that need the loaded data set: classes, split sizes against the batch sizes."""
    if dataset.num_classes < 2:
        raise ValueError(f"dataset.name={config.dataset.name!r} has {dataset.num_classes} class(es) "
                         f"{list(dataset.class_names)}; a classifier needs at least 2")
    if config.batch_size > len(dataset.train):
        raise ValueError(f"batch_size={config.batch_size} is larger than the {len(dataset.train)} training examples "
                         f"of {config.dataset.name}")
    for name, split in (("test", dataset.test), ("validation", dataset.validation)):
        if split is not None and len(split) == 0:
            raise ValueError(f"the {name} split of {config.dataset.name} is empty")
