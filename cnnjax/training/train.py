"""``train_and_evaluate(config, workdir)``: the training loop, evaluation and the run summary."""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from cnnjax.data.pipeline import eval_batches, steps_per_epoch, train_batches
from cnnjax.data.sources import get_dataset
from cnnjax.models import get_model
from cnnjax.training.metrics import MetricWriter, write_json
from cnnjax.training.optimizers import make_optimizer
from cnnjax.training.state import TrainState
from cnnjax.training.steps import eval_step, train_step


def prepare_workdir(workdir: str) -> str:
    """Create ``workdir`` if needed and check that it is writable; return its absolute path."""
    workdir = os.path.abspath(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise PermissionError(f"workdir={workdir!r} is not writable ({e.strerror}); choose another with --workdir=DIR") from e
    return workdir


def count_params(params) -> int:
    """Number of scalars in the ``params`` collection."""
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def create_train_state(config, model, image_shape, total_steps: int) -> TrainState:
    """Initialise parameters from ``config.seed`` and build the optimizer."""
    rng = jax.random.PRNGKey(config.seed)
    init_rng, state_rng = jax.random.split(rng)
    variables = model.init({"params": init_rng}, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    tx = make_optimizer(config.optimizer, total_steps)
    params = variables["params"]
    return TrainState(
        step=jnp.asarray(0, jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=state_rng,
        apply_fn=model.apply,
        tx=tx,
    )


def evaluate(eval_fn, state, source, batch_size: int) -> dict:
    """Loss and accuracy over every example of ``source`` (none dropped)."""
    totals = None
    for batch in eval_batches(source, batch_size):
        out = eval_fn(state, batch)
        totals = out if totals is None else jax.tree_util.tree_map(jnp.add, totals, out)
    totals = jax.device_get(totals)
    count = float(totals["count"])
    return {"loss": float(totals["loss_sum"]) / count, "accuracy": float(totals["correct"]) / count, "count": int(count)}


def train_and_evaluate(config, workdir: str) -> dict:
    """Train ``config.model`` on ``config.dataset``; write config, metrics and summary to ``workdir``."""
    workdir = prepare_workdir(workdir)
    write_json(os.path.join(workdir, "config.json"), config.to_dict())
    dataset = get_dataset(config.dataset)
    batch_size = int(config.batch_size)
    num_epochs = int(config.num_epochs)
    if num_epochs < 1:
        raise ValueError(f"num_epochs={num_epochs} must be >= 1")
    if batch_size > len(dataset.train):
        raise ValueError(f"batch_size={batch_size} is larger than the {len(dataset.train)} training examples")
    steps = steps_per_epoch(len(dataset.train), batch_size)
    total_steps = steps * num_epochs
    model = get_model(config.model.name, num_classes=dataset.num_classes, **config.model.get("kwargs", {}))
    image_shape = dataset.train.images.shape[1:]
    state = create_train_state(config, model, image_shape, total_steps)
    num_params = count_params(state.params)

    label_smoothing = float(config.get("label_smoothing", 0.0))
    step_fn = jax.jit(functools.partial(train_step, label_smoothing=label_smoothing), donate_argnums=0)
    eval_fn = jax.jit(eval_step)
    writer = MetricWriter(workdir)
    eval_batch_size = int(config.get("eval_batch_size", 1000))

    start = time.perf_counter()
    train_time = 0.0
    images_seen = 0
    for epoch in range(num_epochs):
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{num_epochs}", unit="step", leave=False,
                   disable=not config.get("progress_bar", True))
        epoch_start = time.perf_counter()
        sums = {"loss": jnp.zeros(()), "accuracy": jnp.zeros(())}
        for i, batch in enumerate(train_batches(dataset.train, batch_size, seed=config.seed, epoch=epoch)):
            state, metrics = step_fn(state, batch)
            sums = jax.tree_util.tree_map(jnp.add, sums, metrics)
            images_seen += batch_size
            if i % 20 == 0 or i == steps - 1:
                elapsed = time.perf_counter() - epoch_start
                bar.set_postfix(loss=f"{float(metrics['loss']):.4f}", img_s=f"{(i + 1) * batch_size / max(elapsed, 1e-9):,.0f}")
            bar.update(1)
        jax.block_until_ready(state.params)
        epoch_time = time.perf_counter() - epoch_start
        train_time += epoch_time
        bar.close()
        train_metrics = {k: float(v) / steps for k, v in sums.items()}
        train_metrics["images_per_s"] = steps * batch_size / epoch_time
        writer.write(int(state.step), "train", {"epoch": epoch + 1, **train_metrics})
        line = f"epoch {epoch + 1}/{num_epochs}: train loss {train_metrics['loss']:.4f} acc {train_metrics['accuracy']:.4f}"
        if dataset.validation is not None:
            val = evaluate(eval_fn, state, dataset.validation, eval_batch_size)
            writer.write(int(state.step), "validation", {"epoch": epoch + 1, **val})
            line += f", validation acc {val['accuracy']:.4f}"
        print(line + f" ({train_metrics['images_per_s']:,.0f} images/s)", flush=True)

    test = evaluate(eval_fn, state, dataset.test, eval_batch_size)
    writer.write(int(state.step), "test", test)
    wall = time.perf_counter() - start
    summary = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_count": test["count"],
        "num_params": num_params,
        "epochs": num_epochs,
        "steps": int(state.step),
        "wall_time_s": wall,
        "train_images_per_s": images_seen / train_time,
        "model": config.model.name,
        "dataset": config.dataset.name,
        "backend": jax.default_backend(),
    }
    write_json(os.path.join(workdir, "summary.json"), summary)
    print(f"test accuracy {test['accuracy']:.4f} on {test['count']} images; {num_params:,} parameters; "
          f"{wall:.1f} s; summary in {os.path.join(workdir, 'summary.json')}", flush=True)
    return summary
