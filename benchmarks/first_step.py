"""Seconds to the first train step in a fresh process, with cold and then warm caches (the entry points'
defaults: ``experiments.process_defaults.enable_compilation_cache``).

    python -m benchmarks.first_step                    # resnet20: cold then warm, both caches, then JAX's alone
    python -m benchmarks.first_step --model lenet5

Each measurement is a new Python process (``--child``) that applies the entry points' process defaults with
``CNNJAX_CACHE_DIR`` pointing at a temporary folder, builds the train state and times the first train step the
way the train loop does (``create_train_state(cache_key=...)``, ``executable_cache.cached_jit``): trace +
compile, or load, + run. :data:`ROWS`: a process fills an empty folder, the next reads it; then the same pair
with the executable cache off (JAX's persistent cache alone: a warm step is traced and lowered, then found).
``benchmarks.run --only compile`` includes these rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def _child(model_name: str, executables: bool) -> dict:
    t_start = time.perf_counter()
    from experiments import process_defaults

    process_defaults.apply()
    import jax
    import jax.numpy as jnp

    from benchmarks.run import _model_setup, _train_data
    from cnnjax.models import get_model
    from cnnjax.training import executable_cache
    from cnnjax.training.steps import train_step
    from cnnjax.training.train import create_train_state

    if not executables:
        executable_cache.set_folder(None)
    images, labels = _train_data(model_name, 128, 1)
    batch = {"image": jnp.asarray(images[0]), "label": jnp.asarray(labels[0])}
    image_shape, config = _model_setup(model_name)
    key = {"benchmark": "first_step", "model": model_name, "optimizer": config.optimizer.to_dict()}
    t_setup = time.perf_counter()
    state = create_train_state(config, get_model(model_name, num_classes=10), image_shape, total_steps=10_000,
                               cache_key=key)
    jax.block_until_ready(state)
    t_state = time.perf_counter()
    step = executable_cache.cached_jit(train_step, key=key, donate_argnums=0)
    state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    t_end = time.perf_counter()
    return {"first_step_s": t_end - t_state, "state_s": t_state - t_setup, "setup_s": t_setup - t_start,
            "to_first_step_s": t_end - t_start, "step_program": getattr(step, "events", ["jax.jit"])}


#: (row name, executable cache on): the entry points' two caches cold then warm, then JAX's cache alone.
ROWS = (("cold, both caches", True), ("warm, both caches", True), ("cold, JAX's cache alone", False),
        ("warm, JAX's cache alone", False))


def cold_and_warm(model_name: str = "resnet20") -> list[dict]:
    """One row per :data:`ROWS` entry, ``{"cache", "first_step_s", "to_first_step_s", ...}``, each from its own
    process; the executable cache and JAX's each get their own folder."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnnjax-cache-") as root:
        for cache, executables in ROWS:
            folder = os.path.join(root, "both" if executables else "jax-only")
            env = {**os.environ, "CNNJAX_CACHE_DIR": folder}
            extra = [] if executables else ["--no-executable-cache"]
            out = subprocess.run([sys.executable, "-m", "benchmarks.first_step", "--model", model_name, "--child",
                                  *extra], env=env, capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"model": model_name, "cache": cache, **result,
                         "cache_files": sum(len(f) for _, _, f in os.walk(folder))})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20", choices=("lenet5", "resnet20"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-executable-cache", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.model, executables=not args.no_executable_cache)), flush=True)
        return 0
    for row in cold_and_warm(args.model):
        print(f"{row['model']} {row['cache']:23s}: first step {row['first_step_s']:5.2f} s (train state "
              f"{row['state_s']:5.2f} s, process start to first step {row['to_first_step_s']:5.2f} s; step program "
              f"{', '.join(row['step_program'])}; {row['cache_files']} cache files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
