"""Train several seeds of one config together: one jitted program, ``jax.vmap`` over a leading seed axis.

Trials that differ only in ``seed`` share the model, the data set and the step; the train states are
stacked along a new leading axis (``state.params[k].shape == (S, ...)``) and ``jax.vmap(train_step)``
advances all S at once. Each seed keeps what makes it a seed: its initialisation
(``create_train_state(seed)``), its data order (``train_batches(seed=seed)``: the stacked batch holds
seed s's batch at row s) and its augmentation and dropout draws (``fold_in(state.rng, step)`` with the
seed's own ``state.rng``). Each trial's folder gets what a sequential run writes: ``config.json``,
``metrics.jsonl`` and ``summary.json`` (same keys, plus ``vmap_seeds``: S), so the results equal the
sequential runs' within float tolerance and are collected the same way.

A group writes its folders only when it has finished (no checkpoints): a group killed mid-way leaves
nothing behind, and its trials start again. Whether vmap is faster than one seed after another depends on
the backend (``benchmarks/vmap_seeds.py``); the sweep uses it only when asked (``--vmap_seeds``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.data.pipeline import eval_batches, steps_per_epoch, train_batches
from cnnjax.data.sources import get_dataset
from cnnjax.training.config_checks import check_config, check_dataset
from cnnjax.training.executable_cache import cached_jit
from cnnjax.training.metrics import to_python, write_json
from cnnjax.training.run_identity import CONFIG_FILE, SUMMARY_FILE, check_same_run, config_differences
from cnnjax.training.steps import eval_step, new_train_sums, train_step_and_sum
from cnnjax.training.train import (
    NonFiniteLossError,
    _make_augment_fn,
    build_model,
    count_params,
    create_train_state,
    prepare_workdir,
    program_key,
)
from cnnjax.training.workdir_lock import WorkdirLock


def check_seed_group(configs) -> None:
    """The configs must differ in ``seed`` only (and in result-neutral fields), with distinct seeds."""
    if len(configs) < 1:
        raise ValueError("train_seeds needs at least one config")
    seeds = [int(c.seed) for c in configs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"train_seeds: seeds {seeds} repeat; each config of a group needs its own seed")
    reference = configs[0].to_dict()
    for c in configs[1:]:
        other = c.to_dict()
        other["seed"] = reference["seed"]
        differences = config_differences(reference, other)
        if differences:
            raise ValueError(f"train_seeds: the config of seed {c.seed} differs from seed {configs[0].seed}'s in more "
                             f"than the seed ({'; '.join(differences)}); vmap over seeds needs one config")
    if configs[0].get("init_from") or configs[0].get("frozen"):
        raise ValueError("train_seeds: init_from / frozen are not supported by vmap over seeds; train these "
                         "trials one after another")


def stack_states(states):
    """One train state whose array leaves have a leading seed axis (``apply_fn``/``tx`` from the first)."""
    first = states[0]
    same = [s.replace(apply_fn=first.apply_fn, tx=first.tx) for s in states]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *same)


def stacked_train_batches(source, batch_size: int, seeds, epoch: int):
    """Each seed's own batches of ``epoch``, stacked: ``image`` (S, B, H, W, C), ``label`` (S, B)."""
    iterators = [train_batches(source, batch_size, seed=s, epoch=epoch) for s in seeds]
    for batches in zip(*iterators):
        yield {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def evaluate_seeds(eval_fn, state, source, batch_size: int, top_k) -> list[dict]:
    """Loss and top-k accuracy of every seed's model over every example of ``source`` (as ``evaluate``)."""
    totals = None
    for batch in eval_batches(source, batch_size):
        out = eval_fn(state, batch)
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    totals = jax.device_get(totals)
    results = []
    for s in range(len(totals["count"])):
        count = float(totals["count"][s])
        r = {"loss": float(totals["loss_sum"][s]) / count, "count": int(count)}
        for k in top_k:
            r["accuracy" if k == 1 else f"top{k}_accuracy"] = float(totals[f"correct_top{k}"][s]) / count
        results.append(r)
    return results


def _records_jsonl(records) -> str:
    import json

    return "".join(json.dumps(to_python(r)) + "\n" for r in records)


@dataclasses.dataclass
class SeedGroup:
    """What the seeds of one config share (read once from ``configs[0]``) and their stacked train state."""

    configs: list
    workdirs: list
    dataset: object
    state: object
    step_fn: object
    eval_fn: object
    top_k: tuple
    num_params: int

    @property
    def seeds(self) -> list[int]:
        return [int(c.seed) for c in self.configs]


def _check_group(configs, workdirs) -> None:
    if len(configs) != len(workdirs):
        raise ValueError(f"train_seeds: {len(configs)} configs but {len(workdirs)} workdirs")
    check_seed_group(configs)
    for c in configs:
        check_config(c)
    for c, w in zip(configs, workdirs):
        if check_same_run(c, w):
            raise ValueError(f"train_seeds: {w} already holds a run of this config; resume it with "
                             "train_and_evaluate (vmap over seeds starts fresh runs only)")


def _build_group(configs, workdirs) -> SeedGroup:
    """Data, model, stacked states and the vmapped jitted train / eval steps of a checked group."""
    config = configs[0]
    dataset = get_dataset(config.dataset)
    check_dataset(config, dataset)
    steps = steps_per_epoch(len(dataset.train), int(config.batch_size))
    model = build_model(config, dataset.num_classes)
    image_shape = tuple(dataset.image_shape)
    key = program_key(config, dataset.num_classes, image_shape, steps)  # the seeds differ only in their seed
    state = stack_states([create_train_state(c, model, image_shape, steps * int(config.num_epochs), steps,
                                             cache_key=key) for c in configs])
    step_fn = cached_jit(jax.vmap(functools.partial(
        train_step_and_sum, loss=config.loss, label_smoothing=float(config.label_smoothing),
        augment_fn=_make_augment_fn(config), ema_decay=float(config.ema_decay))), donate_argnums=(0, 1),
        key=key, name="vmap_seeds.train_step_and_sum")
    top_k = (1, 5) if dataset.num_classes > 10 else (1,)
    eval_fn = cached_jit(jax.vmap(functools.partial(eval_step, loss=config.loss, use_ema=bool(config.eval_with_ema),
                                                    top_k=top_k), in_axes=(0, None)),
                         key=key, name="vmap_seeds.eval_step")
    return SeedGroup(configs, workdirs, dataset, state, step_fn, eval_fn, top_k,
                     count_params(jax.tree.map(lambda p: p[0], state.params)))


def _train_epoch(group: SeedGroup, epoch: int, clock: dict):
    """One epoch of every seed; returns the host copy of the seeds' running sums. ``clock`` accumulates
    ``first_step_s``, ``train_time_s`` and ``images`` (compilation excluded)."""
    sums = jax.tree.map(lambda x: jnp.stack([x] * len(group.seeds)), new_train_sums())
    t0, done_here = time.perf_counter(), 0
    batch_size = int(group.configs[0].batch_size)
    for batch in stacked_train_batches(group.dataset.train, batch_size, group.seeds, epoch):
        group.state, sums, _ = group.step_fn(group.state, sums, batch)
        if clock["first_step_s"] is None:
            jax.block_until_ready(group.state)
            clock["first_step_s"], t0 = time.perf_counter() - clock["start"], time.perf_counter()
        else:
            done_here += 1
    jax.block_until_ready(group.state)
    clock["train_time_s"] += time.perf_counter() - t0
    clock["images"] += done_here * batch_size
    host = jax.device_get(sums)
    bad = [s for s, f in zip(group.seeds, host["first_nonfinite_step"]) if f >= 0]
    if bad:
        raise NonFiniteLossError(f"the training loss became NaN or Inf for seed(s) {bad} (vmap over seeds)")
    return host


def _epoch_records(group: SeedGroup, epoch: int, host, records: list, best: list) -> None:
    """Append each seed's train (and validation) record of ``epoch``; keep the best validation accuracy."""
    step = int(jax.device_get(group.state.step)[0])
    val = (evaluate_seeds(group.eval_fn, group.state, group.dataset.validation,
                          int(group.configs[0].eval_batch_size), group.top_k)
           if group.dataset.validation is not None else None)
    for s in range(len(group.seeds)):
        count = max(int(host["count"][s]), 1)
        records[s].append({"step": step, "split": "train", "time": time.time(), "epoch": epoch + 1,
                           "loss": float(host["loss"][s]) / count, "accuracy": float(host["accuracy"][s]) / count})
        if val is not None:
            records[s].append({"step": step, "split": "validation", "time": time.time(), "epoch": epoch + 1,
                               **val[s]})
            best[s] = val[s]["accuracy"] if best[s] is None else max(best[s], val[s]["accuracy"])


def _write_trials(group: SeedGroup, records: list, best: list, clock: dict) -> list[dict]:
    """Evaluate every seed on the test split and write each trial's config, metrics and summary."""
    config = group.configs[0]
    tests = evaluate_seeds(group.eval_fn, group.state, group.dataset.test, int(config.eval_batch_size), group.top_k)
    step = int(jax.device_get(group.state.step)[0])
    summaries = []
    for s, (c, w) in enumerate(zip(group.configs, group.workdirs)):
        test = tests[s]
        records[s].append({"step": step, "split": "test", "time": time.time(), **test})
        summary = {
            "test_accuracy": test["accuracy"], "test_loss": test["loss"], "test_count": test["count"],
            "best_validation_accuracy": best[s], "num_params": group.num_params, "epochs": int(config.num_epochs),
            "steps": step, "wall_time_s": time.perf_counter() - clock["start"], "train_time_s": clock["train_time_s"],
            "train_images_per_s": clock["images"] / max(clock["train_time_s"], 1e-9),  # per seed; the group ran S x
            "first_step_s": clock["first_step_s"], "model": config.model.name, "dataset": config.dataset.name,
            "backend": jax.default_backend(), "devices": 1, "processes": 1, "vmap_seeds": len(group.seeds),
        }
        summary.update({f"test_{k}": v for k, v in test.items() if k.startswith("top")})
        write_json(os.path.join(w, CONFIG_FILE), c.to_dict())
        with open(os.path.join(w, "metrics.jsonl"), "w") as f:
            f.write(_records_jsonl(records[s]))
        write_json(os.path.join(w, SUMMARY_FILE), summary)  # last: its presence means "finished"
        summaries.append(summary)
        print(f"seed {c.seed}: test accuracy {test['accuracy']:.4f} on {test['count']} images; summary in "
              f"{os.path.join(w, SUMMARY_FILE)}", flush=True)
    return summaries


def train_seeds(configs, workdirs) -> list[dict]:
    """Train the seeds of ``configs`` (one config up to its seed) together and write each trial's folder.

    Returns the summaries, in the order of ``configs``. Every folder must be fresh (no run of its config
    started yet): resuming is done trial by trial by ``train_and_evaluate``.
    """
    configs, workdirs = list(configs), [os.path.abspath(w) for w in workdirs]
    _check_group(configs, workdirs)
    group = _build_group(configs, workdirs)
    for w in workdirs:
        prepare_workdir(w)
    with contextlib.ExitStack() as locks:
        for w in workdirs:
            locks.enter_context(WorkdirLock(w))
        records, best = [[] for _ in configs], [None] * len(configs)
        clock = {"start": time.perf_counter(), "first_step_s": None, "train_time_s": 0.0, "images": 0}
        num_epochs = int(configs[0].num_epochs)
        for epoch in range(num_epochs):
            host = _train_epoch(group, epoch, clock)
            _epoch_records(group, epoch, host, records, best)
            print(f"epoch {epoch + 1}/{num_epochs} (vmap over seeds {group.seeds}): train loss "
                  + " ".join(f"{r[-1 - (group.dataset.validation is not None)]['loss']:.4f}" for r in records)
                  + f" ({clock['images'] / max(clock['train_time_s'], 1e-9):,.0f} images/s per seed)", flush=True)
        return _write_trials(group, records, best, clock)
