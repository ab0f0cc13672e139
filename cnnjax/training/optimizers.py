"""Optimizers from a config: Adam (the lectures' default, learning rate 1e-3) and SGD."""

from __future__ import annotations

import optax

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "warmup_cosine")


def make_schedule(config, total_steps: int):
    """A learning-rate schedule ``step -> lr`` from ``config.learning_rate`` and ``config.schedule``."""
    lr = config.learning_rate
    if not isinstance(lr, (int, float)) or lr <= 0:
        raise ValueError(f"optimizer.learning_rate={lr!r} must be a number > 0")
    name = config.get("schedule", "constant")
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "cosine":
        return optax.cosine_decay_schedule(lr, max(total_steps, 1))
    if name == "warmup_cosine":
        warmup = int(config.get("warmup_steps", 0))
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1))
    raise ValueError(f"optimizer.schedule={name!r} is unknown; available: {', '.join(SCHEDULES)}")


def make_optimizer(config, total_steps: int) -> optax.GradientTransformation:
    """Build the optax transformation named by ``config.name`` with its schedule."""
    name = config.name
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name={name!r} is unknown; available: {', '.join(OPTIMIZERS)}")
    schedule = make_schedule(config, total_steps)
    weight_decay = float(config.get("weight_decay", 0.0))
    if name == "adam":
        tx = optax.adam(schedule)
    elif name == "adamw":
        tx = optax.adamw(schedule, weight_decay=weight_decay)
    else:
        tx = optax.sgd(schedule, momentum=config.get("momentum", 0.9) or None, nesterov=bool(config.get("nesterov", False)))
    if name != "adamw" and weight_decay:
        tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
    return tx
