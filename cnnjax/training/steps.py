"""Pure train and eval steps: functions of (state, batch) that ``jax.jit`` compiles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def preprocess(images, dtype=jnp.float32):
    """uint8 NHWC images -> floats in [0, 1]."""
    return images.astype(dtype) / 255.0


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Mean softmax cross-entropy ``-sum_k q_k log softmax(z)_k`` with optional label smoothing."""
    num_classes = logits.shape[-1]
    targets = jax.nn.one_hot(labels, num_classes)
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + label_smoothing / num_classes
    return optax.softmax_cross_entropy(logits, targets)


def train_step(state, batch, label_smoothing: float = 0.0):
    """One gradient step; returns the new state and ``{"loss", "accuracy"}`` of the batch."""
    rng = jax.random.fold_in(state.rng, state.step)
    images = preprocess(batch["image"])

    def loss_fn(params):
        variables = {**state.variables(), "params": params}
        if state.batch_stats:
            logits, updates = state.apply_fn(
                variables, images, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
            )
        else:
            logits, updates = state.apply_fn(variables, images, train=True, rngs={"dropout": rng}), {}
        loss = cross_entropy(logits, batch["label"], label_smoothing).mean()
        return loss, (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates_tx, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates_tx)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        batch_stats=updates.get("batch_stats", state.batch_stats),
    )
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return new_state, {"loss": loss, "accuracy": accuracy}


def eval_step(state, batch):
    """Sums over the valid examples of a batch: ``loss_sum``, ``correct``, ``count``."""
    logits = state.apply_fn(state.variables(), preprocess(batch["image"]), train=False)
    mask = batch["mask"]
    loss = cross_entropy(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {"loss_sum": jnp.sum(loss * mask), "correct": jnp.sum(correct * mask), "count": jnp.sum(mask)}
