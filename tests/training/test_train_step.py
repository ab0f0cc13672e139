import functools

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

    grads = jax.jit(jax.grad(loss))(state.params)  # jitted like the code under test (eager: 15 s of dispatch)
    before = state.params
    new, _ = jax.jit(train_step)(state, batch)
    lr, eps = 1e-3, 1e-8
    for g, a, b in zip(*(jax.tree_util.tree_leaves(t) for t in (grads, new.params, before))):
        expected = -lr * np.asarray(g) / (np.abs(np.asarray(g)) + eps)
        np.testing.assert_allclose(np.asarray(a - b), expected, atol=2e-6, rtol=1e-3)


def _smoothed_cross_entropy(logits, labels, s):
    """Mean of -sum_k q_k log softmax(z)_k with q = (1 - s) onehot(y) + s / K, written out here."""
    num_classes = logits.shape[-1]
    log_p = logits - jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)
    q = (1 - s) * (jnp.arange(num_classes)[None, :] == labels[:, None]) + s / num_classes
    return -jnp.mean(jnp.sum(q * log_p, axis=-1))


def test_train_step_loss_and_update_are_the_label_smoothed_ones():
    """train_step(label_smoothing=s): its loss is the smoothed cross-entropy of the batch, and with plain SGD
    the update is -lr * the gradient of that loss (not of the unsmoothed one)."""
    ds = synthetic_dataset(num_train=128)
    model = get_model("lenet5", num_classes=10)
    lr, s = 0.05, 0.4
    state = create_train_state(_config(name="sgd", learning_rate=lr, momentum=0.0), model, (28, 28, 1), 1)
    # weights x2 in each of the 5 layers: logits x32, far from uniform, where smoothing changes the loss
    state = state.replace(params=jax.tree_util.tree_map(lambda p: 2 * p, state.params))
    batch = next(train_batches(ds.train, 64, seed=0, epoch=0))
    images, labels = jnp.asarray(batch["image"], jnp.float32) / 255.0, jnp.asarray(batch["label"])

    def hand_loss(params, smoothing):
        return _smoothed_cross_entropy(model.apply({"params": params}, images, train=True), labels, smoothing)

    loss_and_grad = jax.jit(jax.value_and_grad(hand_loss))  # one compilation for both smoothings
    expected_loss, grads = loss_and_grad(state.params, s)
    plain_loss, plain_grads = loss_and_grad(state.params, 0.0)
    assert abs(float(expected_loss) - float(plain_loss)) > 0.05  # the smoothing changes the loss ...
    new, metrics = jax.jit(functools.partial(train_step, label_smoothing=s))(state, batch)
    np.testing.assert_allclose(float(metrics["loss"]), float(expected_loss), rtol=1e-5)
    moved = [np.asarray(a - b) for a, b in zip(jax.tree_util.tree_leaves(new.params),
                                              jax.tree_util.tree_leaves(state.params))]
    for delta, g, g_plain in zip(moved, jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(plain_grads)):
        np.testing.assert_allclose(delta, -lr * np.asarray(g), atol=1e-6, rtol=1e-4)
    difference = max(float(np.max(np.abs(np.asarray(g) - np.asarray(p))))
                     for g, p in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(plain_grads)))
    assert lr * difference > 1e-4  # ... and its gradient, by far more than the tolerance above


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


def _updates(name, grads, **opt):
    """The parameter changes of successive steps of optimizer ``name`` fed ``grads`` (from params p0 = 1, 2, 3)."""
    params = {"w": jnp.asarray([1.0, -2.0, 3.0])}
    tx = make_optimizer(_config(name=name, **opt).optimizer, 10)
    opt_state, out = tx.init(params), []
    for g in grads:
        delta, opt_state = tx.update({"w": jnp.asarray(g)}, opt_state, params)
        params = {"w": params["w"] + delta["w"]}
        out.append(np.asarray(delta["w"]))
    return out, np.asarray(params["w"])


def test_sgd_and_adamw_build():
    """Each optimizer's first steps follow its formula (optax's conventions for momentum and decay)."""
    g1, g2 = np.array([0.5, -1.0, 2.0], np.float32), np.array([-0.25, 0.5, 1.0], np.float32)
    lr, m = 0.1, 0.9
    # SGD with momentum: trace t = g + m t_prev, delta = -lr t
    (d1, d2), _ = _updates("sgd", [g1, g2], learning_rate=lr, momentum=m)
    np.testing.assert_allclose(d1, -lr * g1, rtol=1e-6)
    np.testing.assert_allclose(d2, -lr * (g2 + m * g1), rtol=1e-6)
    # Nesterov: delta = -lr (g + m t) with t = g + m t_prev
    (d1, d2), _ = _updates("sgd", [g1, g2], learning_rate=lr, momentum=m, nesterov=True)
    np.testing.assert_allclose(d1, -lr * (g1 + m * g1), rtol=1e-6)
    np.testing.assert_allclose(d2, -lr * (g2 + m * (g2 + m * g1)), rtol=1e-6)
    # momentum 0: plain gradient descent
    (d1, d2), _ = _updates("sgd", [g1, g2], learning_rate=lr, momentum=0.0)
    np.testing.assert_allclose(d2, -lr * g2, rtol=1e-6)
    # AdamW: first step -lr (g / (|g| + eps) + wd p0), the decay decoupled from the gradient
    p0, wd, eps = np.array([1.0, -2.0, 3.0]), 0.2, 1e-8
    (d1,), _ = _updates("adamw", [g1], learning_rate=lr, weight_decay=wd)
    np.testing.assert_allclose(d1, -lr * (g1 / (np.abs(g1) + eps) + wd * p0), rtol=1e-5)
    # Adam with weight_decay: L2 added to the gradient before Adam, so the first step is -lr sign(g + wd p0)
    (d1,), _ = _updates("adam", [g1], learning_rate=lr, weight_decay=wd)
    coupled = g1 + wd * p0
    np.testing.assert_allclose(d1, -lr * coupled / (np.abs(coupled) + eps), rtol=1e-5)
    # gradient clipping by global norm: a gradient of norm 2.29 clipped to 1 before SGD
    (d1,), _ = _updates("sgd", [g1], learning_rate=lr, momentum=0.0, grad_clip_norm=1.0)
    np.testing.assert_allclose(d1, -lr * g1 / np.linalg.norm(g1), rtol=1e-5)


def test_batchnorm_running_statistics_are_the_training_forward_passs():
    """The step keeps the BatchNorm statistics of its own training forward pass (flax's mutable apply on the
    same images and parameters), not the old ones."""
    from cnnjax.training.steps import preprocess

    ds = synthetic_dataset(num_train=128)
    model = get_model("small_cnn", num_classes=10)
    state = create_train_state(_config(), model, (28, 28, 1), total_steps=1)
    batch = next(train_batches(ds.train, 64, seed=0, epoch=0))
    before = jax.tree_util.tree_map(np.asarray, state.batch_stats)
    dropout_rng = jax.random.split(jax.random.fold_in(state.rng, state.step))[1]  # as the step draws it
    _, expected = jax.jit(lambda s: model.apply(s.variables(), preprocess(batch["image"]), train=True,
                                                rngs={"dropout": dropout_rng}, mutable=["batch_stats"]))(state)
    new, _ = jax.jit(train_step)(state, batch)
    leaves = jax.tree_util.tree_leaves_with_path(new.batch_stats)
    assert len(leaves) >= 8
    for (path, got), want, old in zip(leaves, jax.tree_util.tree_leaves(expected["batch_stats"]),
                                      jax.tree_util.tree_leaves(before)):
        assert not np.array_equal(got, old), jax.tree_util.keystr(path)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=jax.tree_util.keystr(path))


def test_first_nonfinite_step_names_the_step_that_went_bad():
    """Steps count from 1: weights made NaN before the 3rd step make step 3 the first bad one, and it stays 3."""
    from cnnjax.training.steps import new_train_sums, train_step_and_sum

    ds = synthetic_dataset(num_train=128)
    state = create_train_state(_config(), get_model("lenet5", num_classes=10), (28, 28, 1), total_steps=4)
    batch = next(train_batches(ds.train, 32, seed=0, epoch=0))
    step = jax.jit(train_step_and_sum)
    sums = new_train_sums()
    for _ in range(2):
        state, sums, _ = step(state, sums, batch)
    assert int(sums["first_nonfinite_step"]) == -1
    state = state.replace(params=jax.tree_util.tree_map(lambda p: jnp.full_like(p, jnp.nan), state.params))
    for _ in range(2):
        state, sums, _ = step(state, sums, batch)
    assert int(sums["first_nonfinite_step"]) == 3
