"""A sweep's pictures (PNG, matplotlib's Agg backend): accuracy vs parameters and vs FLOPs per point with
error bars (one standard deviation over seeds), and learning curves per point from ``metrics.jsonl``."""

from __future__ import annotations

import json
import os

PLOTS = ("accuracy_vs_params.png", "accuracy_vs_flops.png", "learning_curves.png")


def _figure(**kwargs):
    """A ``matplotlib.figure.Figure`` (Agg canvas; no pyplot, so no process-wide backend state)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig, path: str) -> None:
    # No date or software version in the file: the same results give the same bytes.
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})


def _scatter(points, x_key: str, x_label: str, path: str) -> None:
    fig = _figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for p in points:
        x = p[x_key]
        if x is None:
            continue
        mean, std = p["test_accuracy"]
        ax.errorbar([x], [mean], yerr=[std or 0.0], fmt="o", capsize=4, label=f"{p['label']} (n={len(p['seeds'])})")
    ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)


def _curves(workdir: str, rows) -> dict[str, list[tuple[int, float, str]]]:
    """Per trial: ``(epoch, value, split)`` of the train loss and, when present, the validation accuracy."""
    out = {}
    for r in rows:
        path = os.path.join(workdir, r["trial"], "metrics.jsonl")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
        out[r["trial"]] = [(rec["epoch"], rec["loss"], "train loss") for rec in records if rec["split"] == "train"]
        out[r["trial"]] += [(rec["epoch"], rec["accuracy"], "validation accuracy") for rec in records
                            if rec["split"] == "validation"]
    return out


def learning_curves(workdir: str, points, path: str) -> None:
    """Train loss (and validation accuracy when the runs kept a validation split) per epoch, mean over seeds."""
    curves = _curves(workdir, [r for p in points for r in p["rows"]])
    panels = [s for s in ("train loss", "validation accuracy") if any(c[2] == s for v in curves.values() for c in v)]
    fig = _figure(figsize=(6 * max(len(panels), 1), 4))
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False)
    for ax, split in zip(axes[0], panels):
        for p in points:
            by_epoch: dict[int, list[float]] = {}
            for r in p["rows"]:
                for epoch, value, s in curves.get(r["trial"], []):
                    if s == split:
                        by_epoch.setdefault(epoch, []).append(value)
            epochs = sorted(by_epoch)
            if epochs:
                means = [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs]
                ax.plot(epochs, means, marker="o", label=p["label"])
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{split} (mean over seeds)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, path)


def write_plots(workdir: str, rows, points) -> list[str]:
    """Write the three PNGs of :data:`PLOTS` into ``workdir``; return their paths."""
    paths = [os.path.join(workdir, name) for name in PLOTS]
    _scatter(points, "num_params", "parameters", paths[0])
    _scatter(points, "flops_per_example", "FLOPs per example (multiply-add = 2)", paths[1])
    learning_curves(workdir, points, paths[2])
    return paths
