"""Reproducible sweeps: one base config, a list of overrides, one run per point, one results table.

Each point trains in ``workdir/<point name>`` (so an interrupted sweep resumes point by point, and each
point resumes exactly), then ``results.json`` and ``results.md`` collect every point's summary.
"""

from __future__ import annotations

import copy
import os

from cnnjax.training.metrics import write_json
from cnnjax.training.train import train_and_evaluate

TABLE_COLUMNS = ("test_accuracy", "test_loss", "num_params", "train_images_per_s", "train_time_s")


def apply_overrides(config, overrides: dict):
    """A copy of ``config`` with dotted-key ``overrides`` set (the key must exist, the type must fit)."""
    config = copy.deepcopy(config)
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for p in parents:
            if p not in node:
                raise ValueError(f"sweep override {dotted!r}: {p!r} is not a config field")
            node = node[p]
        if leaf not in node:
            raise ValueError(f"sweep override {dotted!r}: {leaf!r} is not a config field")
        node[leaf] = value
    return config


def run_sweep(config, workdir: str) -> list[dict]:
    """Train every point of ``config.sweep`` (a list of ``{"name": ..., "overrides": {...}}``)."""
    points = list(config.sweep)
    if not points:
        raise ValueError("config.sweep is empty: give a list of {'name': ..., 'overrides': {...}}")
    names = [p["name"] for p in points]
    if len(set(names)) != len(names):
        raise ValueError(f"sweep point names must be unique: {names}")
    base = copy.deepcopy(config)
    with base.unlocked():
        del base["sweep"]
    rows = []
    for point in points:
        run_config = apply_overrides(base, dict(point["overrides"]))
        summary = train_and_evaluate(run_config, os.path.join(workdir, point["name"]))
        rows.append({"name": point["name"], "overrides": dict(point["overrides"]),
                     **{k: summary.get(k) for k in TABLE_COLUMNS}})
    write_json(os.path.join(workdir, "results.json"), rows)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(results_table(rows))
    return rows


def results_table(rows: list[dict]) -> str:
    """A Markdown table of the sweep's results."""
    lines = ["| point | " + " | ".join(TABLE_COLUMNS) + " |", "|---" * (len(TABLE_COLUMNS) + 1) + "|"]
    for r in rows:
        cells = [f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k]) for k in TABLE_COLUMNS]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
