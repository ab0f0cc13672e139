"""Optimizers and learning-rate schedules from a config (seed 003: Adam by default, SGD to compare).

``config.optimizer`` fields: ``name`` (adam | adamw | sgd), ``learning_rate`` (> 0), ``schedule``
(constant | cosine | warmup_cosine | step), ``warmup_steps`` or ``warmup_epochs``, ``boundaries_epochs``
and ``decay_factor`` (step), ``weight_decay``, ``momentum``/``nesterov`` (sgd), ``grad_clip_norm``,
``accumulate_steps``.
"""

from __future__ import annotations

import optax

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "step")


def make_schedule(config, total_steps: int, steps_per_epoch: int = 1):
    """A learning-rate schedule ``step -> lr``.

    cosine: ``lr * (1 + cos(pi t / T)) / 2``; warmup_cosine: linear 0 -> lr over the warm-up, then cosine
    to 0; step: ``lr * decay_factor ** (number of boundaries passed)``.
    """
    lr = config.learning_rate
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"optimizer.learning_rate={lr!r} must be a number > 0")
    name = config.get("schedule", "constant")
    total_steps = max(int(total_steps), 1)
    warmup = int(config.get("warmup_steps", 0)) or int(config.get("warmup_epochs", 0)) * steps_per_epoch
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "cosine":
        return optax.cosine_decay_schedule(lr, total_steps)
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1))
    if name == "step":
        boundaries = [int(e) * steps_per_epoch for e in config.get("boundaries_epochs", ())]
        factor = float(config.get("decay_factor", 0.1))
        return optax.piecewise_constant_schedule(lr, {b: factor for b in boundaries})
    raise ValueError(f"optimizer.schedule={name!r} is unknown; available: {', '.join(SCHEDULES)}")


def make_optimizer(config, total_steps: int, steps_per_epoch: int = 1) -> optax.GradientTransformation:
    """Build the optax transformation named by ``config.name`` (see the module docstring)."""
    name = config.name
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name={name!r} is unknown; available: {', '.join(OPTIMIZERS)}")
    accumulate = int(config.get("accumulate_steps", 1))
    if accumulate < 1:
        raise ValueError(f"optimizer.accumulate_steps={accumulate} must be >= 1")
    schedule = make_schedule(config, -(-total_steps // accumulate), max(steps_per_epoch // accumulate, 1))
    weight_decay = float(config.get("weight_decay", 0.0))
    if weight_decay < 0:
        raise ValueError(f"optimizer.weight_decay={weight_decay} must be >= 0")
    if name == "adam":
        tx = optax.adam(schedule)
    elif name == "adamw":
        tx = optax.adamw(schedule, weight_decay=weight_decay)
    else:
        momentum = float(config.get("momentum", 0.9))
        tx = optax.sgd(schedule, momentum=momentum or None, nesterov=bool(config.get("nesterov", False)))
    if name != "adamw" and weight_decay:
        tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
    clip = float(config.get("grad_clip_norm", 0.0))
    if clip:
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)
    if accumulate > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulate)
    return tx


def freeze(tx: optax.GradientTransformation, trainable_mask) -> optax.GradientTransformation:
    """Apply ``tx`` only where ``trainable_mask`` is True; frozen parameters get a zero update."""
    import jax

    labels = jax.tree_util.tree_map(lambda t: "train" if t else "frozen", trainable_mask)
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
