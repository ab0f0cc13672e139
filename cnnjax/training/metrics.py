"""Metrics in the workdir: JSON lines (``metrics.jsonl``) and TensorBoard event files (``tensorboard/``)."""

from __future__ import annotations

import json
import os
import sys
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
    """Appends one JSON object per record to ``metrics.jsonl`` and mirrors scalars to TensorBoard."""

    def __init__(self, workdir: str, tensorboard: bool = True, enabled: bool = True):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = enabled
        self._tb = None
        if enabled and tensorboard:
            self._tb = _summary_writer_class()(os.path.join(workdir, "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop records newer than ``step`` (written after the checkpoint a resumed run starts from)."""
        if not self.enabled or not os.path.exists(self.path):
            return
        with open(self.path) as f:
            kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
        with open(self.path, "w") as f:
            f.writelines(kept)

    def write(self, step: int, split: str, metrics: dict) -> None:
        if not self.enabled:
            return
        metrics = to_python(metrics)
        record = {"step": int(step), "split": split, "time": time.time(), **metrics}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self._tb.add_scalar(f"{split}/{k}", v, int(step))
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _summary_writer_class():
    """``tensorboardX.SummaryWriter``, imported without PyTorch: tensorboardX imports torch when it is installed
    (only to accept torch tensors; 2.7 s of a run's start on two cores), and these are plain scalars. Where
    torch is already imported, nothing changes."""
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # makes ``import torch`` raise ImportError, which tensorboardX handles
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


def read_metrics(workdir: str) -> list[dict]:
    """All records of ``workdir/metrics.jsonl``."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path: str, obj) -> None:
    """Write ``obj`` as indented JSON atomically (write a temporary file, then rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(to_python(obj), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
