"""Reproducible sweeps: trials from the config (``spec``), run where you choose (``executors``), resumed
trial by trial (``runner``), gathered from the trials' folders (``collect``) and drawn (``plots``)."""

from cnnjax.training.sweeps.collect import collect, results_csv, results_markdown
from cnnjax.training.sweeps.runner import dry_run_lines, plan, run_sweep
from cnnjax.training.sweeps.spec import Trial, apply_overrides, expand_trials

__all__ = ["Trial", "apply_overrides", "collect", "dry_run_lines", "expand_trials", "plan", "results_csv",
           "results_markdown", "run_sweep"]
