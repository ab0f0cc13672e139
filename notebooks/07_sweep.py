# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Reading a sweep: the convolution-variant ablation
#
# `configs/conv_ablation.py` swaps LeNet-5's second convolution between the lectures' variants (standard,
# depthwise, separable, grouped, dilated, deformable, locally connected), each with several seeds.
# `python -m experiments.sweep` trains every trial in its own folder and gathers `results.csv` (one row per
# trial), `results.md` (mean ± std per variant) and plots. This notebook reads a sweep's workdir; without
# one it runs a tiny sweep itself.

# %%
import csv
import os
import subprocess
import sys
import tempfile

import numpy as np
from IPython.display import Image, Markdown, display

from cnnjax.plots import new_figure

# %% tags=["parameters"]
# The full sweep (about an hour on 2 CPU cores):
#   python -m experiments.sweep --config=conv_ablation --workdir=runs/conv_ablation
# then set SWEEP_WORKDIR = "../runs/conv_ablation" (relative to notebooks/) or CNNJAX_SWEEP_WORKDIR.
SWEEP_WORKDIR = os.environ.get("CNNJAX_SWEEP_WORKDIR", "")
SMOKE = os.environ.get("CNNJAX_NOTEBOOK_SMOKE") == "1"  # the test suite sets it
OUTPUT = os.environ.get("CNNJAX_NOTEBOOK_OUTPUT") or tempfile.mkdtemp(prefix="cnnjax_nb07_")

# %%
if not SWEEP_WORKDIR:  # the sweep's own smoke size (2 variants x 2 seeds), smaller still under the test suite
    SWEEP_WORKDIR = os.path.join(OUTPUT, "conv_ablation")
    command = [sys.executable, "-m", "experiments.sweep", "--config=conv_ablation:runlocal", f"--workdir={SWEEP_WORKDIR}"]
    if SMOKE:
        command += ["--config.dataset.train_limit=512", "--config.dataset.test_limit=200", "--config.batch_size=64"]
    repo = os.path.dirname(os.path.abspath(os.getcwd())) if os.path.basename(os.getcwd()) == "notebooks" else None
    done = subprocess.run(command, capture_output=True, text=True, cwd=repo)
    print(" ".join(command[1:]))
    if done.returncode != 0:
        raise RuntimeError(f"the sweep failed:\n{done.stderr[-3000:]}")
print("reading", os.path.abspath(SWEEP_WORKDIR))

# %% [markdown]
# ## The results table
# `results.md` as the sweep wrote it (mean ± sample standard deviation over seeds).

# %%
markdown_path = os.path.join(SWEEP_WORKDIR, "results.md")
if os.path.exists(markdown_path):
    display(Markdown(open(markdown_path).read()))
else:
    print("no results.md in the workdir yet (python -m experiments.sweep ... --collect writes it)")

# %% [markdown]
# ## One row per trial, from `results.csv`
# Grouped here by the swept field (every override except the seed) to draw accuracy against parameters.

# %%
with open(os.path.join(SWEEP_WORKDIR, "results.csv")) as f:
    trials = list(csv.DictReader(f))
swept = [k for k in trials[0] if k not in ("trial", "seed") and "." in k]
print(f"{len(trials)} trials; swept fields: {swept}")
points: dict[str, list[dict]] = {}
for row in trials:
    points.setdefault(", ".join(row[k] for k in swept), []).append(row)
summary = []
for label, rows in points.items():
    accuracy = np.array([float(r["test_accuracy"]) for r in rows])
    std = accuracy.std(ddof=1) if len(accuracy) > 1 else 0.0
    summary.append((label, accuracy.mean(), std, int(float(rows[0]["num_params"])), len(rows)))
    print(f"{label:24s} accuracy {accuracy.mean():.4f} ± {std:.4f} over {len(rows)} seed(s), "
          f"{int(float(rows[0]['num_params'])):,} parameters")

# %%
fig = new_figure(figsize=(7, 4))
ax = fig.subplots()
for label, mean, std, params, _ in summary:
    ax.errorbar(params, mean, yerr=std, fmt="o", capsize=4)
    ax.annotate(label, (params, mean), textcoords="offset points", xytext=(6, 4), fontsize=8)
ax.set_xscale("log")
ax.set_xlabel("parameters of the network (log scale)")
ax.set_ylabel("test accuracy (mean ± std over seeds)")
ax.grid(alpha=0.3)
fig

# %% [markdown]
# ## The sweep's own plots
# Whatever PNGs the sweep wrote into its workdir (accuracy against parameters and FLOPs, learning curves).

# %%
for name in sorted(os.listdir(SWEEP_WORKDIR)):
    if name.endswith(".png"):
        print(name)
        display(Image(filename=os.path.join(SWEEP_WORKDIR, name), width=640))
