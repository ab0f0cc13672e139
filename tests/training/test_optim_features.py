"""Gradient accumulation, EMA, mixed precision, schedules and label smoothing, each against a formula."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from cnnjax.data.augment import make_augmentation
from cnnjax.data.pipeline import eval_batches, steps_per_epoch, train_batches
from cnnjax.data.sources import get_dataset, synthetic_dataset
from cnnjax.models import get_model
from cnnjax.training.metrics import read_metrics
from cnnjax.training.optimizers import make_optimizer, make_schedule
from cnnjax.training.steps import cross_entropy, eval_step, train_step
from cnnjax.training.train import build_model, create_train_state


def _config(**opt):
    c = ml_collections.ConfigDict({"seed": 0, "ema_decay": 0.0, "model": {"name": "lenet5"},
                                   "optimizer": {"name": "adam", "learning_rate": 1e-3}})
    c.optimizer.update(opt)
    return c


def test_accumulating_two_half_batches_equals_one_full_batch():
    ds = synthetic_dataset(num_train=256)
    batch = next(train_batches(ds.train, 64, seed=0, epoch=0))
    halves = [{k: v[:32] for k, v in batch.items()}, {k: v[32:] for k, v in batch.items()}]
    model = get_model("lenet5")
    initial = create_train_state(_config(), model, (28, 28, 1), total_steps=1)
    initial_params = jax.tree_util.tree_map(np.array, initial.params)
    tx = make_optimizer(_config(accumulate_steps=2).optimizer, 2)
    acc = initial.replace(tx=tx, opt_state=tx.init(initial.params))  # the same weights, accumulating Adam
    full, _ = jax.jit(train_step)(initial, batch)
    step = jax.jit(train_step)
    acc, _ = step(acc, halves[0])
    unchanged = jax.tree_util.tree_map(np.array_equal, acc.params, initial_params)
    assert all(jax.tree_util.tree_leaves(unchanged)), "the first micro-batch must not update the weights"
    acc, _ = step(acc, halves[1])
    diff = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))), full.params, acc.params)
    assert max(jax.tree_util.tree_leaves(diff)) < 1e-6


def test_ema_follows_its_formula():
    ds = synthetic_dataset(num_train=128)
    batch = next(train_batches(ds.train, 64, seed=0, epoch=0))
    c = _config()
    c.ema_decay = 0.9
    state = create_train_state(c, get_model("lenet5"), (28, 28, 1), total_steps=2)
    ema0 = jax.tree_util.tree_map(np.array, state.ema_params)
    new, _ = jax.jit(functools.partial(train_step, ema_decay=0.9))(state, batch)
    expected = jax.tree_util.tree_map(lambda e, p: 0.9 * e + 0.1 * p, ema0, new.params)
    diff = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))), expected, new.ema_params)
    assert max(jax.tree_util.tree_leaves(diff)) < 1e-7
    evaluate = jax.jit(eval_step, static_argnames=("use_ema", "top_k"))
    test_batch = next(eval_batches(ds.test, 64))
    out_ema, out_raw = evaluate(new, test_batch, use_ema=True), evaluate(new, test_batch, use_ema=False)
    assert float(out_ema["loss_sum"]) != float(out_raw["loss_sum"])


def test_bfloat16_compute_keeps_float32_parameters():
    c = _config()
    c.mixed_precision = "bfloat16"
    model = build_model(c, 10)
    state = create_train_state(c, model, (28, 28, 1), total_steps=1)
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(state.params))
    ds = synthetic_dataset(num_train=128)
    batch = next(train_batches(ds.train, 64, seed=0, epoch=0))
    new, metrics = jax.jit(train_step)(state, batch)
    assert np.isfinite(float(metrics["loss"]))
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(new.params))
    jaxpr = str(jax.make_jaxpr(lambda s, b: train_step(s, b))(state, batch))
    assert "bf16" in jaxpr


def test_schedules():
    c = ml_collections.ConfigDict({"learning_rate": 0.1, "schedule": "warmup_cosine", "warmup_steps": 10})
    s = make_schedule(c, total_steps=110)
    assert float(s(0)) == 0.0 and abs(float(s(10)) - 0.1) < 1e-7 and abs(float(s(110))) < 1e-7
    assert abs(float(s(60)) - 0.05) < 1e-6  # halfway through the cosine: lr * (1 + cos(pi/2)) / 2
    c = ml_collections.ConfigDict({"learning_rate": 0.1, "schedule": "step", "boundaries_epochs": (2, 4),
                                   "decay_factor": 0.1})
    s = make_schedule(c, total_steps=100, steps_per_epoch=10)
    np.testing.assert_allclose([float(s(t)) for t in (0, 19, 20, 39, 40)], [0.1, 0.1, 0.01, 0.01, 0.001], rtol=1e-6)


def test_label_smoothing_formula():
    logits = jnp.array([[2.0, 0.0, -1.0]])
    s = 0.3
    q = np.array([1 - s + s / 3, s / 3, s / 3])
    expected = -np.sum(q * np.asarray(jax.nn.log_softmax(logits[0])))
    np.testing.assert_allclose(float(cross_entropy(logits, jnp.array([0]), s)[0]), expected, rtol=1e-6)
    np.testing.assert_allclose(float(cross_entropy(logits, jnp.array([0]))[0]),
                               float(optax.softmax_cross_entropy_with_integer_labels(logits, jnp.array([0]))[0]))


def _replay(config):
    """The run of ``config`` replayed by hand, outside ``train_and_evaluate``: the initial state, then
    ``train_step`` with the config's label smoothing, augmentation and EMA over each epoch's batches.
    Returns the final state and each epoch's mean train loss."""
    dataset = get_dataset(config.dataset)
    steps = steps_per_epoch(len(dataset.train), config.batch_size)
    model = build_model(config, dataset.num_classes)
    state = create_train_state(config, model, dataset.image_shape, steps * config.num_epochs, steps)
    step = jax.jit(functools.partial(train_step, label_smoothing=config.label_smoothing,
                                     augment_fn=make_augmentation(config.augment), ema_decay=config.ema_decay))
    epoch_losses = []
    for epoch in range(config.num_epochs):
        losses = []
        for batch in train_batches(dataset.train, config.batch_size, seed=config.seed, epoch=epoch):
            state, metrics = step(state, batch)
            losses.append(float(metrics["loss"]))
        assert len(losses) == steps
        epoch_losses.append(float(np.mean(losses)))
    return state, epoch_losses


def _final_tree(workdir):
    latest = workdir / "checkpoints" / "latest"
    step = max(int(d.name) for d in latest.iterdir() if d.name.isdigit())
    return ocp.StandardCheckpointer().restore(str(latest / str(step) / "state"))


def test_the_run_trains_with_the_configured_step(synthetic_run):
    """train_and_evaluate trains with the config's label smoothing, augmentation (brightness +-0.3, flips),
    dropout and EMA: replayed by hand with train_step, it gives the run's train loss of each epoch and its final
    weights. (Dropping any of them from the loop's step changes both: ``python -m tests.mutants --only loop``.)"""
    config, workdir, _ = synthetic_run
    state, epoch_losses = _replay(config)
    train = [r for r in read_metrics(str(workdir)) if r["split"] == "train"]
    np.testing.assert_allclose([r["loss"] for r in train], epoch_losses, rtol=1e-5)
    final = _final_tree(workdir)
    for name in ("params", "ema_params"):
        for a, b in zip(jax.tree_util.tree_leaves(final[name]), jax.tree_util.tree_leaves(getattr(state, name))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_evaluation_never_augments(synthetic_run):
    """The run's validation and test numbers are those of its final EMA weights (``eval_with_ema``) on the
    stored images, although training augmented every batch; on augmented images, or with the raw weights, the
    numbers would differ."""
    config, workdir, summary = synthetic_run
    dataset = get_dataset(config.dataset)
    model = build_model(config, dataset.num_classes)
    final = _final_tree(workdir)
    augment = make_augmentation(config.augment)

    @jax.jit
    def loss_sum(params, images, labels, augmented):
        x = images.astype(jnp.float32) / 255.0
        x = jnp.where(augmented, augment(jax.random.PRNGKey(0), x), x)
        logits = model.apply({"params": params}, x, train=False)
        return jnp.sum(cross_entropy(logits, labels))

    last_validation = [r for r in read_metrics(str(workdir)) if r["split"] == "validation"][-1]
    for source, loss in ((dataset.test, summary["test_loss"]), (dataset.validation, last_validation["loss"])):
        batch = source.get_batch(np.arange(len(source)))
        stored = float(loss_sum(final["ema_params"], batch["image"], batch["label"], False)) / len(source)
        np.testing.assert_allclose(loss, stored, rtol=1e-5)
        augmented = float(loss_sum(final["ema_params"], batch["image"], batch["label"], True)) / len(source)
        assert abs(augmented - stored) > 0.01
        raw_weights = float(loss_sum(final["params"], batch["image"], batch["label"], False)) / len(source)
        assert abs(raw_weights - stored) > 1e-3


def test_train_step_applies_the_augmentation():
    from cnnjax.data.augment import make_augmentation
    from configs._base import augment_config

    ds = synthetic_dataset(num_train=128)
    batch = next(train_batches(ds.train, 64, seed=0, epoch=0))
    state = create_train_state(_config(), get_model("lenet5"), (28, 28, 1), total_steps=1)
    aug_config = augment_config()
    aug_config.hflip, aug_config.noise_std = True, 0.2
    augment = make_augmentation(aug_config)
    step = jax.jit(train_step, static_argnames="augment_fn")  # two compilations, then cheap calls
    plain, m_plain = step(state, batch)
    augmented, m_aug = step(state, batch, augment_fn=augment)
    assert float(m_plain["loss"]) != float(m_aug["loss"])
    again, m_again = step(state, batch, augment_fn=augment)
    assert float(m_aug["loss"]) == float(m_again["loss"])  # the draw is a function of (rng, step) ...
    _, m_next = step(state.replace(step=state.step + 1), batch, augment_fn=augment)
    assert float(m_next["loss"]) != float(m_aug["loss"])  # ... so the same weights at the next step see another


def test_eval_step_sums_only_the_valid_examples_and_counts_top_k():
    """eval_step: loss and top-k hits summed over the examples with mask 1, against NumPy on the logits."""
    ds = synthetic_dataset(num_train=64, num_test=64)
    state = create_train_state(_config(), get_model("lenet5"), (28, 28, 1), total_steps=1)
    batch = next(eval_batches(ds.test, 64))
    batch["mask"] = (np.arange(64) % 3 != 0).astype(np.float32)  # a third of the batch is padding
    out = jax.jit(eval_step, static_argnames=("use_ema", "top_k"))(state, batch, top_k=(1, 3))
    logits = np.asarray(state.apply_fn({"params": state.params}, batch["image"].astype(np.float32) / 255.0,
                                       train=False), np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid, labels = batch["mask"] > 0, batch["label"]
    rank = (logits > logits[np.arange(64), labels][:, None]).sum(-1)  # classes scored above the label
    assert float(out["count"]) == valid.sum() == 42
    np.testing.assert_allclose(float(out["loss_sum"]), -log_p[np.arange(64), labels][valid].sum(), rtol=1e-5)
    assert float(out["correct_top1"]) == (rank[valid] == 0).sum()
    assert float(out["correct_top3"]) == (rank[valid] < 3).sum()
    assert (rank[valid] < 3).sum() > (rank[valid] == 0).sum()  # top-3 counts more than top-1 here
