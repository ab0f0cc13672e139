"""``run_sweep(config, workdir)``: check every trial, skip the finished ones, train the rest, collect.

Order: expand and check all trials (fields, types, value ranges, folder names, duplicates) and the
executor; look at every trial folder (a folder holding another config is refused); only then train.
Each trial trains in ``workdir/<trial name>``, so a killed sweep continues where it stopped (a trial
interrupted mid-run resumes from its checkpoint) and a finished one, re-run, trains nothing.
"""

from __future__ import annotations

import fnmatch
import json
import os

from cnnjax.training.metrics import to_python
from cnnjax.training.sweeps import executors
from cnnjax.training.sweeps.collect import collect
from cnnjax.training.sweeps.spec import Trial, expand_trials, point_key
from cnnjax.training.sweeps.trial import TRIAL_FILE, finished_summary, trial_record, write_trial_record


def _check_trial_config(config) -> None:
    from cnnjax.models import get_model
    from cnnjax.training.config_checks import check_config

    check_config(config)
    get_model(config.model.name, **dict(config.model.get("kwargs", {}) or {}))  # unknown model / keyword


def plan(config, only: str | None = None) -> list[Trial]:
    """The sweep's trials, every one checked (see ``expand_trials``), filtered by the glob ``only``."""
    trials = expand_trials(config, check=_check_trial_config)
    if only:
        chosen = [t for t in trials if fnmatch.fnmatchcase(t.name, only)]
        if not chosen:
            raise ValueError(f"--only={only!r} matches none of the {len(trials)} trials; their names are like "
                             f"{trials[0].name!r}")
        trials = chosen
    return trials


def dry_run_lines(trials: list[Trial]) -> list[str]:
    """One line per trial: its folder name and full overrides (seed included)."""
    points = len({point_key(t) for t in trials})
    return [t.describe() for t in trials] + [f"{len(trials)} trial(s), {points} point(s)"]


def meta(trial: Trial) -> dict:
    """What ``sweep_trial.json`` records about a trial (FLOPs are added when it is written)."""
    return {"name": trial.name, "index": trial.index, "overrides": trial.overrides, "point": trial.point,
            "seed": trial.seed, "override_keys": list(trial.overrides)}  # JSON files sort keys: keep the order


def refresh_trial_record(folder: str, trial: Trial) -> None:
    """Write ``sweep_trial.json`` if it is missing or its name/index/overrides are stale (FLOPs kept)."""
    path = os.path.join(folder, TRIAL_FILE)
    if not os.path.exists(path):
        write_trial_record(folder, trial_record(meta(trial), trial.config))
        return
    with open(path) as f:
        record = json.load(f)
    now = json.loads(json.dumps(to_python(meta(trial)), sort_keys=True))
    if any(record.get(k) != v for k, v in now.items()):
        write_trial_record(folder, {**record, **now})


def _check_executor(executor: str, workers: int) -> None:
    if executor not in executors.EXECUTORS:
        raise ValueError(f"executor={executor!r} is unknown; allowed: {', '.join(executors.EXECUTORS)}")
    if workers is None:  # one per core, decided when the number of trials to train is known
        return
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be an int >= 1, or None (one per core)")
    if executor == "submitit":
        executors.require_submitit()
    elif workers > 1:
        executors.split_cores(executors.available_cores(), workers)


def pending_trials(trials: list[Trial], workdir: str) -> tuple[list[Trial], list[Trial]]:
    """(to train, finished): a trial is finished when its folder holds the finished run of its config.

    Raises ValueError naming the trial when its folder holds a run of another config.
    """
    todo, done = [], []
    for t in trials:
        try:
            summary = finished_summary(t.config, os.path.join(workdir, t.name))
        except ValueError as e:
            raise ValueError(f"trial {t.index} ({t.name}): {e}") from None
        (todo if summary is None else done).append(t)
    return todo, done


def seed_groups(trials: list[Trial]) -> list[list[Trial]]:
    """Trials grouped by point (they differ only in their seed), in order of first appearance."""
    groups: dict[str, list[Trial]] = {}
    for t in trials:
        groups.setdefault(point_key(t), []).append(t)
    return list(groups.values())


def run_sweep(config, workdir: str, *, workers: int | None = 1, executor: str = "local", only: str | None = None,
              vmap_seeds: bool = False, submitit_cluster: str = "slurm", submitit_parameters: dict | None = None,
              log=print) -> dict:
    """Train the sweep's unfinished trials and collect the results (see the module docstring).

    Args:
      workers: local executor: trials run in that many processes, each pinned to its share of the cores
        (1: one after another in this process; None: one process per core, at most one per trial to train).
      executor: "local" or "submitit" (a job array; ``submitit_cluster`` "slurm", "local" or "debug").
      only: a glob on trial names: train (and collect) only the matching trials.
      vmap_seeds: train the trials of a point together, ``jax.vmap`` over seeds (``cnnjax.training.vmap_seeds``).

    Returns ``{"trials", "trained", "skipped", "failures", "rows", "missing"}``.
    """
    _check_executor(executor, workers)
    trials = plan(config, only)
    workdir = os.path.abspath(workdir)
    todo, done = pending_trials(trials, workdir)
    log(f"{len(trials)} trial(s): {len(done)} finished, {len(todo)} to train")
    for t in done:  # a finished trial's folder holds its current record (also if trained outside a sweep)
        refresh_trial_record(os.path.join(workdir, t.name), t)
    failures, trained = [], [t.name for t in todo]
    if vmap_seeds:
        from cnnjax.training.run_identity import check_same_run
        from cnnjax.training.vmap_seeds import train_seeds

        # Only fresh trials go together; one that was started (and stopped) resumes on its own.
        fresh = [t for t in todo if not check_same_run(t.config, os.path.join(workdir, t.name))]
        rest = [t for t in todo if t not in fresh]
        for group in seed_groups(fresh):
            if len(group) < 2:
                rest.extend(group)
                continue
            log(f"vmap over seeds {[t.seed for t in group]}: {', '.join(t.name for t in group)}")
            train_seeds([t.config for t in group], [os.path.join(workdir, t.name) for t in group])
            for t in group:
                write_trial_record(os.path.join(workdir, t.name), trial_record(meta(t), t.config))
        todo = rest
    jobs = [(t.config, os.path.join(workdir, t.name), meta(t)) for t in todo]
    if workers is None:
        workers = max(1, min(len(executors.available_cores()), len(jobs)))
    if jobs and executor == "submitit":
        failures = executors.run_submitit(jobs, os.path.join(workdir, "submitit"), submitit_cluster,
                                          submitit_parameters, log=log)
    elif jobs and workers > 1:
        failures = executors.run_local_workers(jobs, workers, log=log)
    elif jobs:
        failures = executors.run_in_process(jobs, log=log)
    rows, missing = collect(workdir, [t.name for t in trials])
    return {"trials": trials, "trained": trained, "skipped": [t.name for t in done],
            "failures": failures, "rows": rows, "missing": missing}
