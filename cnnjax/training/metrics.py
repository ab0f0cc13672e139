"""Metrics in the workdir: JSON lines (``metrics.jsonl``) and a terminal progress bar."""

from __future__ import annotations

import json
import os
import time

import numpy as np


def to_python(value):
    """Convert NumPy / JAX scalars and arrays in nested containers to plain Python values."""
    if isinstance(value, dict):
        return {k: to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    if hasattr(value, "item") and np.ndim(value) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


class MetricWriter:
    """Appends one JSON object per call to ``workdir/metrics.jsonl``."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "metrics.jsonl")

    def write(self, step: int, split: str, metrics: dict) -> None:
        record = {"step": int(step), "split": split, "time": time.time(), **to_python(metrics)}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def write_json(path: str, obj) -> None:
    """Write ``obj`` as indented JSON atomically (write a temporary file, then rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(to_python(obj), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
