"""Range checks of a run's config, done before any data is read or anything is written.

Each failure is one ``ValueError``/``TypeError`` line naming the field, the value and what is allowed.
The optimizer's name, schedule and learning rate are checked by ``make_optimizer``, the augmentation
fields by ``make_augmentation``, the model's keyword arguments by the model; this module checks the rest,
and ``check_dataset`` checks what can only be known once the data set is loaded.
"""

from __future__ import annotations

import numbers

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
    """Check every numeric and flag field of a training config (see the module docstring)."""
    get = config.get
    _int("seed", get("seed", 0), 0)
    _int("num_epochs", config.num_epochs, 1)
    _int("batch_size", config.batch_size, 1)
    _int("eval_batch_size", get("eval_batch_size", 1000), 1)
    _number("label_smoothing", get("label_smoothing", 0.0), 0.0, 1.0)
    _number("ema_decay", get("ema_decay", 0.0), 0.0, 1.0)
    _bool("eval_with_ema", get("eval_with_ema", False))
    if get("eval_with_ema", False) and not get("ema_decay", 0.0) > 0:
        raise ValueError(f"eval_with_ema=True needs ema_decay > 0 (got ema_decay={get('ema_decay', 0.0)!r}): "
                         "there is no moving average to evaluate")
    _bool("progress_bar", get("progress_bar", True))
    _bool("tensorboard", get("tensorboard", True))
    _int("checkpoint_every_steps", get("checkpoint_every_steps", 0), 0)
    _int("checkpoint_keep", get("checkpoint_keep", 2), 1)
    frozen = get("frozen", ())
    if not isinstance(frozen, (tuple, list)) or not all(isinstance(f, str) for f in frozen):
        raise TypeError(f"frozen={frozen!r} must be a tuple of parameter subtree names")
    _str("init_from", get("init_from", ""))

    d = config.dataset
    _str("dataset.name", d.name)
    _str("dataset.data_dir", d.get("data_dir", ""))
    for field in ("validation_size", "split_seed", "train_limit", "test_limit", "num_threads", "num_workers"):
        _int(f"dataset.{field}", d.get(field, 0), 0)
    _number("dataset.validation_split", d.get("validation_split", 0.0), 0.0, 1.0)
    size = d.get("target_size", (256, 256))
    if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(_is_int(s) and s >= 1 for s in size):
        raise ValueError(f"dataset.target_size={size!r} must be (height, width), two ints >= 1")
    _choice("dataset.color_mode", d.get("color_mode", "rgb"), COLOR_MODES)
    _choice("dataset.interpolation", d.get("interpolation", "nearest"), INTERPOLATIONS)
    _str("dataset.test_dir", d.get("test_dir", ""))
    _bool("dataset.skip_corrupt", d.get("skip_corrupt", False))
    _bool("dataset.check_images", d.get("check_images", True))

    o = config.optimizer
    _number("optimizer.weight_decay", o.get("weight_decay", 0.0), 0.0)
    _number("optimizer.momentum", o.get("momentum", 0.9), 0.0, 1.0)
    _bool("optimizer.nesterov", o.get("nesterov", False))
    _number("optimizer.grad_clip_norm", o.get("grad_clip_norm", 0.0), 0.0)
    _int("optimizer.accumulate_steps", o.get("accumulate_steps", 1), 1)
    _int("optimizer.warmup_epochs", o.get("warmup_epochs", 0), 0)
    _number("optimizer.decay_factor", o.get("decay_factor", 0.1), 0.0)
    boundaries = o.get("boundaries_epochs", ())
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
