"""Gather a sweep's results from its trials' folders alone: ``results.csv`` (one row per trial) and
``results.md`` (one row per point: mean +- std over its seeds).

A trial folder counts when it holds ``sweep_trial.json`` and ``summary.json``, wherever it was trained
(in this process, a local worker, a Slurm job). Standard deviations are the sample ones (``ddof=1``):
``s = sqrt(sum (x_i - mean)^2 / (n - 1))``; a point with one seed has none.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os

from cnnjax.training.sweeps.trial import TRIAL_FILE

SUMMARY_FILE = "summary.json"
METRIC_COLUMNS = ("test_accuracy", "test_loss", "num_params", "flops_per_example", "train_images_per_s",
                  "train_time_s", "wall_time_s", "vmap_seeds")


def _read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def trial_rows(workdir: str, names=None) -> tuple[list[dict], list[str]]:
    """One row per finished trial folder of ``workdir`` (only ``names`` if given), in trial order.

    Returns the rows and the names of ``names`` that have no finished trial folder.
    """
    folders = sorted(os.listdir(workdir)) if os.path.isdir(workdir) else []
    wanted = None if names is None else list(names)
    if wanted is not None:
        folders = [n for n in wanted if n in folders]
    rows = []
    for name in folders:
        folder = os.path.join(workdir, name)
        if not (os.path.isfile(os.path.join(folder, TRIAL_FILE)) and os.path.isfile(os.path.join(folder, SUMMARY_FILE))):
            continue
        record, summary = _read(os.path.join(folder, TRIAL_FILE)), _read(os.path.join(folder, SUMMARY_FILE))
        order = record.get("override_keys", list(record["overrides"]))
        overrides = {k: record["overrides"][k] for k in order}
        point = {k: record["point"][k] for k in order if k in record["point"]}
        row = {"trial": record["name"], "index": record["index"], "overrides": overrides,
               "point": point, "seed": record["seed"],
               "flops_per_example": record.get("flops_per_example")}
        row.update({k: summary.get(k, row.get(k)) for k in METRIC_COLUMNS if k != "flops_per_example"})
        row["vmap_seeds"] = summary.get("vmap_seeds", 1)
        rows.append(row)
    if wanted is None:
        rows.sort(key=lambda r: (r["index"], r["trial"]))
    done = {r["trial"] for r in rows}
    missing = [] if wanted is None else [n for n in wanted if n not in done]
    return rows, missing


def _cell(value) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def results_csv(rows: list[dict]) -> str:
    """CSV text: trial, every override key (seed included), then the metrics."""
    keys = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial", *keys, *METRIC_COLUMNS])
    for r in rows:
        writer.writerow([r["trial"], *(_cell(r["overrides"].get(k)) for k in keys),
                         *(_cell(r[k]) for k in METRIC_COLUMNS)])
    return out.getvalue()


def mean_std(values) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for fewer than two values)."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def point_label(point: dict) -> str:
    """``conv=grouped:2, optimizer.name=sgd`` (last key part when it is unambiguous)."""
    last = [k.rsplit(".", 1)[-1] for k in point]
    return ", ".join(f"{s if last.count(s) == 1 else k}={v}" for k, s, v in zip(point, last, point.values())) or "base"


def group_points(rows: list[dict]) -> list[dict]:
    """One entry per point, in order of first appearance: label, seeds, and the rows of its trials."""
    points: dict[str, dict] = {}
    for r in rows:
        key = json.dumps(r["point"], sort_keys=True)
        entry = points.setdefault(key, {"point": r["point"], "label": point_label(r["point"]), "rows": []})
        entry["rows"].append(r)
    for entry in points.values():
        entry["seeds"] = [r["seed"] for r in entry["rows"]]
        for k in ("test_accuracy", "test_loss", "train_images_per_s", "wall_time_s"):
            entry[k] = mean_std([r[k] for r in entry["rows"]])
        for k in ("num_params", "flops_per_example"):
            entry[k] = entry["rows"][0][k]
    return list(points.values())


def _pm(mean_and_std, digits: int) -> str:
    mean, std = mean_and_std
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f} (one seed)"


def results_markdown(rows: list[dict]) -> str:
    """A Markdown table, one row per point: accuracy and loss as mean ± std over its seeds."""
    header = ("point", "seeds", "test accuracy", "test loss", "params", "FLOPs/example", "train images/s",
              "wall time/trial (s)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for p in group_points(rows):
        flops = p["flops_per_example"]
        lines.append("| " + " | ".join([
            p["label"], str(len(p["seeds"])), _pm(p["test_accuracy"], 4), _pm(p["test_loss"], 4),
            f"{p['num_params']:,}", f"{flops:,}" if flops is not None else "", f"{p['train_images_per_s'][0]:,.0f}",
            f"{p['wall_time_s'][0]:.1f}"]) + " |")
    return "\n".join(lines) + "\n"


def _write_if_changed(path: str, text: str) -> None:
    """Write ``text`` atomically; leave the file untouched (same bytes, same mtime) when it already holds it."""
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def collect(workdir: str, names=None, plots: bool = True) -> tuple[list[dict], list[str]]:
    """Write ``results.csv``, ``results.md`` (and the plots) of ``workdir``'s finished trials.

    Returns the rows and the names of ``names`` not finished yet.
    """
    rows, missing = trial_rows(workdir, names)
    if not rows:
        return rows, missing
    _write_if_changed(os.path.join(workdir, "results.csv"), results_csv(rows))
    _write_if_changed(os.path.join(workdir, "results.md"), results_markdown(rows))
    if plots:
        from cnnjax.training.sweeps.plots import write_plots

        write_plots(workdir, rows, group_points(rows))
    return rows, missing
