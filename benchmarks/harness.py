"""Timing helpers shared by the benchmarks: interleaved repeats, medians, machine info, JSON results.

The machines are shared and noisy, so contestants are never timed in separate blocks: each repeat
runs every contestant once, in turn (rotating who goes first), and the median over repeats is kept.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def block(value):
    """Wait for JAX arrays (any pytree) or do nothing for torch / Python values."""
    try:
        import jax

        jax.block_until_ready(value)
    except Exception:  # noqa: BLE001 - non-JAX values
        pass
    return value


def interleaved(contestants: dict[str, Callable[[], object]], *, repeats: int = 7, number: int = 10,
                warmup: int = 2, sync: dict[str, Callable[[object], object]] | None = None,
                min_time: float = 0.0) -> dict[str, dict]:
    """Time ``fn()`` for every contestant, interleaved; seconds per call: median, min, all repeats.

    Also the median process CPU time per call (``cpu_median_s``): on one core (``taskset -c 0``) it is the
    work done, robust against other processes' load; with several threads it counts spinning too.

    Each repeat calls a contestant ``number`` times back to back and waits for the last result with
    ``sync[name]`` (default: :func:`block`); the order of contestants rotates between repeats.
    ``min_time`` raises ``number`` (once, before timing) so one repeat of the slowest lasts that long.
    """
    sync = sync or {}
    names = list(contestants)
    for name in names:
        for _ in range(warmup):
            sync.get(name, block)(contestants[name]())
    if min_time > 0:
        slowest = 0.0
        for name in names:
            t = time.perf_counter()
            sync.get(name, block)(contestants[name]())
            slowest = max(slowest, time.perf_counter() - t)
        number = max(number, int(min_time / max(slowest, 1e-9)) + 1)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn, wait = contestants[name], sync.get(name, block)
            c = time.process_time()
            t = time.perf_counter()
            out = None
            for _ in range(number):
                out = fn()
            wait(out)
            times[name].append((time.perf_counter() - t) / number)
            cpu[name].append((time.process_time() - c) / number)
    return {n: {"median_s": statistics.median(ts), "min_s": min(ts), "repeats_s": ts, "number": number,
                "cpu_median_s": statistics.median(cpu[n])}
            for n, ts in times.items()}


def machine_info() -> dict:
    """CPU, core count, load, library versions and devices, for the results files."""
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", "")}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    try:
        import jax
        import jaxlib

        info["jax"] = jax.__version__
        info["jaxlib"] = jaxlib.__version__
        info["jax_backend"] = jax.default_backend()
        info["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception as e:  # noqa: BLE001
        info["jax_error"] = repr(e)
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["torch_device"] = torch.cuda.get_device_name(0)
    except Exception as e:  # noqa: BLE001
        info["torch_error"] = repr(e)
    return info


def write_json(name: str, payload: dict, results_dir: str = RESULTS_DIR) -> str:
    """Write ``results_dir/name.json`` (pretty, sorted keys); return its path."""
    os.makedirs(results_dir, exist_ok=True)
    path = os.path.join(results_dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, sort_keys=True, default=str)
        f.write("\n")
    return path
