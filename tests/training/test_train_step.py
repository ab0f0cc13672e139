import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cnnjax.data.pipeline import train_batches
from cnnjax.data.sources import synthetic_dataset
from cnnjax.models import get_model
from cnnjax.training.optimizers import make_optimizer
from cnnjax.training.steps import train_step
from cnnjax.training.train import count_params, create_train_state, prepare_workdir


def _config(**opt):
    c = ml_collections.ConfigDict({"seed": 0, "optimizer": {"name": "adam", "learning_rate": 1e-3,
                                                             "schedule": "constant"}})
    c.optimizer.update(opt)
    return c


def test_one_train_step_lowers_loss_on_synthetic_data():
    ds = synthetic_dataset(num_train=256)
    model = get_model("lenet5", num_classes=10)
    state = create_train_state(_config(), model, (28, 28, 1), total_steps=10)
    assert count_params(state.params) == 61_706
    batch = next(train_batches(ds.train, 128, seed=0, epoch=0))
    step = jax.jit(train_step)
    before = jax.tree_util.tree_map(np.asarray, state.params)
    state, m1 = step(state, batch)
    assert int(state.step) == 1
    changed = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b), before, state.params)
    assert all(jax.tree_util.tree_leaves(changed))
    for _ in range(5):
        state, m = step(state, batch)
    assert float(m["loss"]) < float(m1["loss"])


def test_adam_step_matches_hand_computed_update():
    """First Adam step: m = (1-b1) g, v = (1-b2) g^2, so delta = -lr * g / (|g| + eps) after bias correction."""
    from cnnjax.training.steps import cross_entropy, preprocess

    ds = synthetic_dataset(num_train=128)
    model = get_model("lenet5", num_classes=10)
    state = create_train_state(_config(), model, (28, 28, 1), total_steps=1)
    batch = next(train_batches(ds.train, 64, seed=0, epoch=0))

    def loss(params):
        logits = model.apply({"params": params}, preprocess(batch["image"]))
        return cross_entropy(logits, batch["label"]).mean()

    grads = jax.grad(loss)(state.params)
    before = state.params
    new, _ = train_step(state, batch)
    lr, eps = 1e-3, 1e-8
    for g, a, b in zip(*(jax.tree_util.tree_leaves(t) for t in (grads, new.params, before))):
        expected = -lr * np.asarray(g) / (np.abs(np.asarray(g)) + eps)
        np.testing.assert_allclose(np.asarray(a - b), expected, atol=2e-6, rtol=1e-3)


@pytest.mark.parametrize("bad", [0.0, -1e-3])
def test_learning_rate_must_be_positive(bad):
    with pytest.raises(ValueError, match=rf"optimizer.learning_rate={bad!r} must be a number > 0"):
        make_optimizer(_config(learning_rate=bad).optimizer, 10)


def test_unknown_optimizer_and_schedule():
    with pytest.raises(ValueError, match=r"optimizer.name='adagrad' is unknown; available: adam"):
        make_optimizer(_config(name="adagrad").optimizer, 10)
    with pytest.raises(ValueError, match=r"optimizer.schedule='zigzag' is unknown"):
        make_optimizer(_config(schedule="zigzag").optimizer, 10)


def test_unwritable_workdir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match=r"workdir=.*a_file/run.* is not writable"):
        prepare_workdir(str(blocker / "run"))


def test_sgd_and_adamw_build():
    params = {"w": jnp.ones(3)}
    for name in ("sgd", "adamw"):
        tx = make_optimizer(_config(name=name).optimizer, 10)
        tx.update({"w": jnp.ones(3)}, tx.init(params), params)
