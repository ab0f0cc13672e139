"""Does the input pipeline keep up with training? Images/s of the pipeline vs the LeNet-5 train step.

    python -m benchmarks.data_pipeline           # full run, writes benchmarks/results/data_pipeline.json
    python -m benchmarks.data_pipeline --quick   # fewer repeats

Contestants, timed interleaved in one process on Fashion-MNIST (60,000 training images), batches of 128:

* ``host: shuffle + gather``: ``cnnjax.data.train_batches`` alone (uint8 batches in host memory).
* ``pipeline + standard augmentation``: the same batches moved to the device, scaled to [0, 1] and
  augmented by ``make_augmentation(augment_config("standard"))`` under ``jax.jit`` (the issue's "default
  augmentations": flip, rotation +-10 deg, shift +-2 px, zoom 0.9-1.1 per axis, brightness, contrast,
  random erasing).
* ``pipeline + all augmentations``: every transform on (adds vertical flip, blur, sharpen, noise).
* ``LeNet-5 train step``: what training consumes: ``create_train_state`` + ``train_step`` from
  ``cnnjax.training`` under ``jax.jit(donate_argnums=0)``, on batches already on the device.
* ``LeNet-5 train step + standard augmentation (fused)``: the augmentation inside the jitted step, as the
  training loop runs it; shows what augmenting costs the step.

``x_train_step`` = images/s divided by the train step's images/s; the issue asks for >= 5 for the
pipeline with the default augmentations. Medians over interleaved repeats (the machine is shared).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections

from benchmarks.harness import interleaved, machine_info, write_json
from cnnjax.data.augment import make_augmentation
from cnnjax.data.pipeline import train_batches
from cnnjax.data.sources import get_dataset
from configs._base import augment_config

BATCH = 128
TRAIN_STEP = "LeNet-5 train step"


def _forever(source, batch_size, seed=0):
    """Training batches epoch after epoch (the loop's order)."""
    for epoch in itertools.count():
        yield from train_batches(source, batch_size, seed=seed, epoch=epoch)


def _augment_fn(config):
    aug = make_augmentation(config)

    @jax.jit
    def fn(key, step, images):
        return aug(jax.random.fold_in(key, step), images.astype(jnp.float32) / 255.0)

    return fn


def _lenet_step(image_shape, augment=None):
    from cnnjax.models import get_model
    from cnnjax.training.steps import train_step
    from cnnjax.training.train import create_train_state
    from configs.lenet import get_config

    config = get_config()
    model = get_model(config.model.name, num_classes=10)
    state = create_train_state(config, model, image_shape, total_steps=10_000)
    if augment is None:
        step = jax.jit(train_step, donate_argnums=0)
    else:
        def fused(state, batch, key):
            images = augment(jax.random.fold_in(key, state.step), batch["image"].astype(jnp.float32) / 255.0)
            return train_step(state, {**batch, "image": images * 255.0})  # train_step divides by 255 again

        step = jax.jit(fused, donate_argnums=0)
    return state, step


def run(quick: bool = False) -> list[dict]:
    """Time the contestants; print a table; write ``benchmarks/results/data_pipeline.json``; return the rows."""
    ds = get_dataset(ml_collections.ConfigDict({"name": "fashion_mnist"}))
    source = ds.train
    repeats, number = (3, 5) if quick else (7, 20)

    host_iter = _forever(source, BATCH)
    aug_iters = {"standard": _forever(source, BATCH, seed=1), "all": _forever(source, BATCH, seed=2)}
    aug_fns = {"standard": _augment_fn(augment_config("standard")), "all": _augment_fn(augment_config("all"))}
    key = jax.random.PRNGKey(0)
    counter = itertools.count()

    def pipeline(name):
        batch = next(aug_iters[name])
        return aug_fns[name](key, next(counter), jax.device_put(batch["image"]))

    device_batches = [jax.device_put(b) for b in itertools.islice(_forever(source, BATCH, seed=3), 16)]
    cycle = itertools.cycle(device_batches)
    holder = {}
    holder["plain"], plain_step = _lenet_step(source.image_shape)
    std_aug = make_augmentation(augment_config("standard"))
    holder["fused"], fused_step = _lenet_step(source.image_shape, augment=std_aug)

    def train_plain():
        holder["plain"], metrics = plain_step(holder["plain"], next(cycle))
        return metrics

    def train_fused():
        holder["fused"], metrics = fused_step(holder["fused"], next(cycle), key)
        return metrics

    contestants = {
        "host: shuffle + gather": lambda: next(host_iter),
        "pipeline + standard augmentation": functools.partial(pipeline, "standard"),
        "pipeline + all augmentations": functools.partial(pipeline, "all"),
        TRAIN_STEP: train_plain,
        "LeNet-5 train step + standard augmentation (fused)": train_fused,
    }
    t0 = time.perf_counter()
    timings = interleaved(contestants, repeats=repeats, number=number, warmup=2)
    step_ips = BATCH / timings[TRAIN_STEP]["median_s"]
    rows = []
    for name, t in timings.items():
        ips = BATCH / t["median_s"]
        rows.append({
            "contestant": name, "images_per_s": ips, "ms_per_batch": 1e3 * t["median_s"],
            "x_train_step": ips / step_ips, "best_images_per_s": BATCH / t["min_s"], "batch": BATCH,
            "repeats_s": t["repeats_s"], "number": t["number"],
        })
    info = machine_info()
    info["cores_available"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    std_row = next(r for r in rows if r["contestant"] == "pipeline + standard augmentation")
    payload = {
        "command": "python -m benchmarks.data_pipeline" + (" --quick" if quick else ""),
        "quick": quick, "rows": rows, "machine": info, "wall_s": time.perf_counter() - t0,
        "requirement": "pipeline with the default augmentations >= 5x the LeNet-5 train step's images/s",
        "requirement_met": std_row["x_train_step"] >= 5.0,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    path = write_json("data_pipeline", payload)
    print(_table(rows))
    print(f"\nrequirement (>= 5x): {'met' if payload['requirement_met'] else 'NOT met'} "
          f"({std_row['x_train_step']:.1f}x); {info.get('cores_available')} cores, backend {info.get('jax_backend')}, "
          f"load {info.get('load_average')}; results in {path}")
    return rows


def _table(rows) -> str:
    head = f"{'contestant':52s} {'images/s':>10s} {'ms/batch':>9s} {'x train step':>12s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['contestant']:52s} {r['images_per_s']:10,.0f} {r['ms_per_batch']:9.2f} "
                     f"{r['x_train_step']:12.1f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    run(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
