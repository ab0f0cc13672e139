"""Seconds to the first train step in a fresh process, with a cold and then a warm persistent compilation
cache (``experiments.process_defaults.enable_compilation_cache``, the entry points' default).

    python -m benchmarks.first_step                    # resnet20: cold, then warm, each in a new process
    python -m benchmarks.first_step --model lenet5

Each measurement is a new Python process (``--child``) that applies the entry points' process defaults with
``CNNJAX_CACHE_DIR`` pointing at one temporary folder, builds the model and train state, and times the first
jitted train step (trace + compile or cache load + run); the first process fills the folder, the second
reads it. ``benchmarks.run --only compile`` includes these rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def _child(model_name: str) -> dict:
    t_start = time.perf_counter()
    from experiments import process_defaults

    process_defaults.apply()
    from benchmarks.run import _jax_contestant, _train_data

    images, labels = _train_data(model_name, 128, 1)
    t_setup = time.perf_counter()
    _, first, _ = _jax_contestant(model_name, 128, images=images, labels=labels)
    return {"first_step_s": first, "setup_s": t_setup - t_start, "to_first_step_s": time.perf_counter() - t_start}


def cold_and_warm(model_name: str = "resnet20") -> list[dict]:
    """``[cold, warm]``: each ``{"cache", "first_step_s", "to_first_step_s", ...}`` from its own process."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnnjax-cache-") as folder:
        env = {**os.environ, "CNNJAX_CACHE_DIR": folder}
        for cache in ("cold", "warm"):
            out = subprocess.run([sys.executable, "-m", "benchmarks.first_step", "--model", model_name, "--child"],
                                 env=env, capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"model": model_name, "cache": cache, **result,
                         "cache_files": sum(len(f) for _, _, f in os.walk(folder))})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20", choices=("lenet5", "resnet20"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.model)), flush=True)
        return 0
    for row in cold_and_warm(args.model):
        print(f"{row['model']} {row['cache']:4s} cache: first step {row['first_step_s']:6.2f} s "
              f"(process start to first step {row['to_first_step_s']:6.2f} s, {row['cache_files']} cache files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
