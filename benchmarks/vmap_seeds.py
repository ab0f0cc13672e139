"""Is training S seeds together (``jax.vmap`` over a seed axis) faster than one seed after another?

    python -m benchmarks.vmap_seeds            # writes benchmarks/results/vmap_seeds.json
    python -m benchmarks.vmap_seeds --quick    # fewer repeats

Contestants, timed interleaved in one process (``benchmarks.harness.interleaved``), for the LeNet-5 train
step on Fashion-MNIST-shaped batches, S = 3 seeds, batch sizes 32 and 128:

* ``sequential``: S calls of the jitted one-seed step (what a sweep does trial after trial);
* ``vmap``: one call of ``jit(vmap(step))`` on the stacked states and batches
  (``cnnjax.training.vmap_seeds``);
* ``one program, unrolled``: one jitted program holding the S one-seed steps side by side (no vmap),
  which lets XLA schedule the independent seeds together without batching any op.

``speedup`` = sequential time / contestant time for the same S steps (> 1: faster than sequential);
``cpu_speedup`` the same for the process CPU time (the work done, less sensitive to other processes' load
on a shared machine, but it also counts threads spinning).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.harness import interleaved, machine_info, write_json
from cnnjax.training.steps import train_step
from cnnjax.training.train import build_model, create_train_state
from cnnjax.training.vmap_seeds import stack_states
from configs._base import base_config

SEEDS = 3
BATCHES = (32, 128)


def _contestants(batch_size: int, seeds: int, conv: str = "standard"):
    config = base_config()
    config.model.kwargs.conv = conv
    model = build_model(config, 10)
    states = []
    for s in range(seeds):
        config.seed = s
        states.append(create_train_state(config, model, (28, 28, 1), 1000, 100))
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (seeds, batch_size, 28, 28, 1), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, (seeds, batch_size), dtype=np.int32))
    batches = [{"image": images[s], "label": labels[s]} for s in range(seeds)]
    stacked_batch = {"image": images, "label": labels}
    stacked = stack_states(states)
    one = jax.jit(train_step)
    vmapped = jax.jit(jax.vmap(train_step))

    @jax.jit
    def unrolled(stacked_state, batch):
        outs = [train_step(jax.tree.map(lambda x, s=s: x[s], stacked_state), jax.tree.map(lambda x, s=s: x[s], batch))
                for s in range(seeds)]
        return jax.tree.map(lambda *x: jnp.stack(x), *outs)

    return {
        "sequential": lambda: [one(states[s], batches[s]) for s in range(seeds)],
        "vmap": lambda: vmapped(stacked, stacked_batch),
        "one program, unrolled": lambda: unrolled(stacked, stacked_batch),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--seeds", type=int, default=SEEDS)
    args = parser.parse_args(argv)
    rows = []
    for batch_size in BATCHES:
        timing = interleaved(_contestants(batch_size, args.seeds), repeats=3 if args.quick else 7,
                             number=3 if args.quick else 5, warmup=1)
        base, base_cpu = timing["sequential"]["median_s"], timing["sequential"]["cpu_median_s"]
        for name, t in timing.items():
            rows.append({"contestant": name, "batch": batch_size, "seeds": args.seeds,
                         "ms_for_all_seeds": 1e3 * t["median_s"], "speedup": base / t["median_s"],
                         "images_per_s": args.seeds * batch_size / t["median_s"], "repeats_s": t["repeats_s"],
                         "cpu_ms_for_all_seeds": 1e3 * t["cpu_median_s"], "cpu_speedup": base_cpu / t["cpu_median_s"]})
            print(f"batch {batch_size:4d}  {name:24s} {1e3 * t['median_s']:8.2f} ms for {args.seeds} seed steps  "
                  f"speed-up {base / t['median_s']:.2f}x (CPU time {1e3 * t['cpu_median_s']:8.2f} ms, "
                  f"{base_cpu / t['cpu_median_s']:.2f}x)", flush=True)
    payload = {"command": "python -m benchmarks.vmap_seeds" + (" --quick" if args.quick else ""),
               "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "quick": args.quick,
               "machine": machine_info(), "rows": rows}
    print("wrote", write_json("vmap_seeds", payload))
    return payload


if __name__ == "__main__":
    from experiments import process_defaults

    process_defaults.apply()
    main()
