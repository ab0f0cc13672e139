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

Then, to show where vmap loses, each layer of LeNet-5 alone (forward + gradient, batch 128, S seeds):
S jitted calls vs one ``jit(vmap(grad))``, compared by process CPU time (``layer_cpu_ratio`` = vmap / sequential,
> 1: vmap does more work).

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


def _layer_cases(seeds: int, batch_size: int = 128):
    """LeNet-5's layers as ``(loss(x, w), x, w)`` with a leading seed axis on both."""
    from cnnjax import ops

    k1, k2 = jax.random.split(jax.random.PRNGKey(0))

    def conv(pad):
        return lambda x, w: jnp.sum(ops.conv(x, w, padding=pad) ** 2)

    return {
        "conv1 1->6 5x5 SAME": (conv("SAME"), jax.random.normal(k1, (seeds, batch_size, 28, 28, 1)),
                                jax.random.normal(k2, (seeds, 5, 5, 1, 6))),
        "conv2 6->16 5x5 VALID": (conv("VALID"), jax.random.normal(k1, (seeds, batch_size, 14, 14, 6)),
                                  jax.random.normal(k2, (seeds, 5, 5, 6, 16))),
        "max-pool 2x2": (lambda x, w: jnp.sum(ops.max_pool(x, 2) ** 2),
                         jax.random.normal(k1, (seeds, batch_size, 28, 28, 6)), jnp.zeros((seeds,))),
        "dense 400->120": (lambda x, w: jnp.sum(jnp.tanh(x @ w)), jax.random.normal(k1, (seeds, batch_size, 400)),
                           jax.random.normal(k2, (seeds, 400, 120))),
    }


def layer_rows(seeds: int, quick: bool) -> list[dict]:
    rows = []
    for name, (loss, x, w) in _layer_cases(seeds).items():
        grad = jax.grad(loss, argnums=(0, 1))
        one, vmapped = jax.jit(grad), jax.jit(jax.vmap(grad))
        t = interleaved({"sequential": lambda: [one(x[s], w[s]) for s in range(seeds)],
                         "vmap": lambda: vmapped(x, w)}, repeats=3 if quick else 7, number=5, warmup=1)
        ratio = t["vmap"]["cpu_median_s"] / t["sequential"]["cpu_median_s"]
        rows.append({"layer": name, "seeds": seeds, "sequential_cpu_ms": 1e3 * t["sequential"]["cpu_median_s"],
                     "vmap_cpu_ms": 1e3 * t["vmap"]["cpu_median_s"], "layer_cpu_ratio": ratio})
        print(f"layer {name:24s} CPU time: sequential {rows[-1]['sequential_cpu_ms']:7.2f} ms, vmap "
              f"{rows[-1]['vmap_cpu_ms']:7.2f} ms, vmap / sequential {ratio:.2f}", flush=True)
    return rows


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
               "machine": machine_info(), "rows": rows, "layers": layer_rows(args.seeds, args.quick)}
    print("wrote", write_json("vmap_seeds", payload))
    return payload


if __name__ == "__main__":
    from experiments import process_defaults

    process_defaults.apply()
    main()
