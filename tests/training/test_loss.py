"""``config.loss`` picks the loss of training and evaluation: softmax cross-entropy or seed 001's sigmoid BCE."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cnnjax.data.pipeline import train_batches
from cnnjax.data.sources import synthetic_dataset
from cnnjax.models import get_model
from cnnjax.training.config_checks import check_config
from cnnjax.training.steps import eval_step, train_step
from cnnjax.training.train import create_train_state
from configs._base import base_config


def _bce_by_hand(logits, labels):
    """Mean over examples of ``-sum_k [y_k log p_k + (1 - y_k) log(1 - p_k)]``, ``p = 1 / (1 + e^-z)``."""
    z = np.asarray(logits, np.float64)
    y = np.eye(z.shape[-1])[np.asarray(labels)]
    p = 1.0 / (1.0 + np.exp(-z))
    return float(np.mean(np.sum(-(y * np.log(p) + (1 - y) * np.log(1 - p)), axis=-1)))


@pytest.fixture(scope="module")
def dilated_state_and_batch():
    config = ml_collections.ConfigDict({"seed": 0, "optimizer": {"name": "sgd", "learning_rate": 0.1,
                                                                 "momentum": 0.0, "schedule": "constant"}})
    state = create_train_state(config, get_model("dilated_cnn", num_classes=10), (28, 28, 1), total_steps=1)
    batch = next(train_batches(synthetic_dataset(num_train=64).train, 16, seed=0, epoch=0))
    return state, batch


def test_train_step_with_the_bce_loss_equals_the_hand_computed_value(dilated_state_and_batch):
    state, batch = dilated_state_and_batch
    logits = state.apply_fn(state.variables(), jnp.asarray(batch["image"], jnp.float32) / 255.0, train=True)
    expected = _bce_by_hand(logits, batch["label"])
    step = jax.jit(train_step, static_argnames=("loss",))
    _, bce = step(state, batch, loss="sigmoid_binary_cross_entropy")
    _, softmax = step(state, batch, loss="softmax_cross_entropy")
    np.testing.assert_allclose(float(bce["loss"]), expected, rtol=1e-5)
    assert abs(float(softmax["loss"]) - expected) > 0.1  # the two losses differ: the config's choice reaches the step
    out = jax.jit(eval_step, static_argnames=("loss",))(
        state, {**batch, "mask": np.ones(len(batch["label"]), np.float32)}, loss="sigmoid_binary_cross_entropy")
    np.testing.assert_allclose(float(out["loss_sum"]) / float(out["count"]), expected, rtol=1e-5)


def test_unknown_loss_is_one_line():
    config = base_config()
    config.loss = "hinge"
    message = "loss='hinge' is unknown; allowed: softmax_cross_entropy, sigmoid_binary_cross_entropy"
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_config(config)


def test_the_loop_trains_and_evaluates_with_the_configured_loss(tmp_path, monkeypatch):
    """``config.loss`` reaches both jitted steps of ``train_and_evaluate`` (spied, the real steps still run)."""
    from cnnjax.training import train as train_lib
    from tests.conftest import synthetic_config

    seen = []

    def spy(step):
        def wrapped(*args, **kwargs):
            seen.append((step.__name__, kwargs["loss"]))
            return step(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(train_lib, "train_step_and_sum", spy(train_lib.train_step_and_sum))
    monkeypatch.setattr(train_lib, "eval_step", spy(train_lib.eval_step))
    config = synthetic_config(loss="sigmoid_binary_cross_entropy", checkpoint_every_steps=0)
    summary = train_lib.train_and_evaluate(config, str(tmp_path / "w"))
    assert {name for name, _ in seen} == {"train_step_and_sum", "eval_step"}
    assert {loss for _, loss in seen} == {"sigmoid_binary_cross_entropy"}
    assert summary["steps"] == 8
