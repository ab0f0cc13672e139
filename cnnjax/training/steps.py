"""Pure train and eval steps: functions of (state, batch) that ``jax.jit`` compiles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from cnnjax.data.augment import scale_images

#: uint8 NHWC images -> floats in [0, 1]: the data side's one scaling function, under the name the steps use.
preprocess = scale_images


def _targets(logits, labels, label_smoothing: float):
    """One-hot targets of integer ``labels``, smoothed: ``q = (1 - s) onehot + s / K``."""
    num_classes = logits.shape[-1]
    targets = jax.nn.one_hot(labels, num_classes)
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + label_smoothing / num_classes
    return targets


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Per-example softmax cross-entropy ``-sum_k q_k log softmax(z)_k`` (``q``: smoothed one-hot targets)."""
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), _targets(logits, labels, label_smoothing))


def sigmoid_binary_cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Per-example ``-sum_k [q_k log sigmoid(z_k) + (1 - q_k) log(1 - sigmoid(z_k))]``: one independent
    logistic unit per class, seed 001's output layer and cost (``q``: smoothed one-hot targets)."""
    targets = _targets(logits, labels, label_smoothing)
    return jnp.sum(optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), targets), axis=-1)


#: ``config.loss`` -> the per-example loss ``f(logits, labels, label_smoothing)``.
LOSSES = {"softmax_cross_entropy": cross_entropy, "sigmoid_binary_cross_entropy": sigmoid_binary_cross_entropy}


def get_loss(name: str):
    """The per-example loss named ``name`` (a key of ``LOSSES``)."""
    if name not in LOSSES:
        raise ValueError(f"loss={name!r} is unknown; allowed: {', '.join(LOSSES)}")
    return LOSSES[name]


def top_k_correct(logits, labels, k: int):
    """1.0 where the label is among the ``k`` largest logits, else 0.0."""
    if k == 1:
        return (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    top = jax.lax.top_k(logits, k)[1]
    return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def train_step(state, batch, *, loss: str = "softmax_cross_entropy", label_smoothing: float = 0.0, augment_fn=None,
               ema_decay: float = 0.0):
    """One gradient step on the batch mean of ``loss``; returns the new state and ``{"loss", "accuracy"}``.

    The step's randomness is ``fold_in(state.rng, step)``: split into the augmentation key (one key
    per image inside ``augment_fn``) and the dropout key.
    """
    rng = jax.random.fold_in(state.rng, state.step)
    aug_rng, dropout_rng = jax.random.split(rng)
    images = preprocess(batch["image"])
    per_example_loss = get_loss(loss)
    if augment_fn is not None:
        images = augment_fn(aug_rng, images)

    def loss_fn(params):
        variables = {**state.variables(), "params": params}
        if state.batch_stats:
            logits, updates = state.apply_fn(
                variables, images, train=True, rngs={"dropout": dropout_rng}, mutable=["batch_stats"]
            )
        else:
            logits, updates = state.apply_fn(variables, images, train=True, rngs={"dropout": dropout_rng}), {}
        return per_example_loss(logits, batch["label"], label_smoothing).mean(), (logits, updates)

    (loss_value, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates_tx, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates_tx)
    ema = state.ema_params
    if ema is not None:
        ema = jax.tree_util.tree_map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema, params)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        batch_stats=updates.get("batch_stats", state.batch_stats),
        ema_params=ema,
    )
    accuracy = jnp.mean(top_k_correct(logits, batch["label"], 1))
    return new_state, {"loss": loss_value, "accuracy": accuracy}


def new_train_sums():
    """Running sums of one epoch's train metrics, kept on the device (see ``train_step_and_sum``)."""
    return {"loss": jnp.zeros((), jnp.float32), "accuracy": jnp.zeros((), jnp.float32),
            "count": jnp.zeros((), jnp.int32), "first_nonfinite_step": jnp.full((), -1, jnp.int32)}


def train_step_and_sum(state, sums, batch, **step_kwargs):
    """``train_step`` plus the epoch's running sums and the first step whose loss was NaN or Inf."""
    step = state.step
    state, metrics = train_step(state, batch, **step_kwargs)
    bad = ~jnp.isfinite(metrics["loss"])
    first = jnp.where((sums["first_nonfinite_step"] < 0) & bad, step + 1, sums["first_nonfinite_step"])
    sums = {"loss": sums["loss"] + metrics["loss"], "accuracy": sums["accuracy"] + metrics["accuracy"],
            "count": sums["count"] + 1, "first_nonfinite_step": first}
    return state, sums, metrics


def eval_step(state, batch, *, loss: str = "softmax_cross_entropy", use_ema: bool = False,
              top_k: tuple[int, ...] = (1,)):
    """Sums over the valid (``mask`` = 1) examples of a batch: ``loss_sum`` (of ``loss``, no smoothing),
    ``correct_top{k}``, ``count``."""
    logits = state.apply_fn(state.variables(use_ema), preprocess(batch["image"]), train=False)
    mask = batch["mask"]
    out = {"loss_sum": jnp.sum(get_loss(loss)(logits, batch["label"]) * mask), "count": jnp.sum(mask)}
    for k in top_k:
        out[f"correct_top{k}"] = jnp.sum(top_k_correct(logits, batch["label"], k) * mask)
    return out
