"""Where trials run: in this process, in N local worker processes, or as a submitit (Slurm) job array.

Every executor takes ``jobs``, a list of ``(config, workdir, meta)``, runs :func:`run_trial` on each, and
returns the names of the trials that failed with their error line. A trial never calls
``jax.distributed.initialize()``: each is one single-process run. Trials in processes of their own use the
sweep's compilation caches (:func:`cache_settings`): the seeds of a config share its compiled programs.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time

EXECUTORS = ("local", "submitit")
SUBMITIT_CLUSTERS = ("slurm", "local", "debug")
#: JAX's persistent compilation cache options that a trial process takes over from the sweep's.
JAX_CACHE_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                     "jax_persistent_cache_min_entry_size_bytes")


def cache_settings() -> dict:
    """This process's compilation caches (JAX's persistent cache, ``executable_cache``), for the trial processes
    it starts: they run cnnjax directly, not through the entry point that set the caches up."""
    import jax

    from cnnjax.training import executable_cache

    return {"jax": {k: jax.config.values[k] for k in JAX_CACHE_OPTIONS}, "executables": executable_cache.settings()}


def use_cache_settings(settings: dict) -> None:
    """Apply :func:`cache_settings` of the sweep's process in a trial's process."""
    import jax

    from cnnjax.training import executable_cache

    for key, value in settings["jax"].items():
        jax.config.update(key, value)
    executable_cache.set_folder(**settings["executables"])


def available_cores() -> list[int]:
    """The CPU cores this process may run on (``sched_getaffinity``; ``os.cpu_count()`` elsewhere)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def split_cores(cores: list[int], workers: int) -> list[list[int]]:
    """``workers`` disjoint, near-equal, contiguous shares of ``cores`` (each worker gets at least one)."""
    if workers > len(cores):
        raise ValueError(f"workers={workers} is more than the {len(cores)} cores available {cores}; each worker "
                         "needs a core of its own")
    base, extra = divmod(len(cores), workers)
    shares, start = [], 0
    for w in range(workers):
        size = base + (w < extra)
        shares.append(cores[start:start + size])
        start += size
    return shares


def run_in_process(jobs, log=print) -> list[tuple[str, str]]:
    """One trial after another in this process (the cores are the process's)."""
    from cnnjax.training.sweeps.trial import run_trial

    for n, (config, workdir, meta) in enumerate(jobs, 1):
        log(f"[{n}/{len(jobs)}] {meta['name']}")
        run_trial(config, workdir, meta)
    return []


def _pin_and_follow_parent(cores: list[int]) -> None:
    """In the worker, before it starts: run on ``cores`` only, and die with the sweep process (Linux)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: a killed sweep leaves no orphan worker


def _start_worker(job, cores: list[int], log_path: str) -> subprocess.Popen:
    config, workdir, meta = job
    os.makedirs(workdir, exist_ok=True)
    log_file = open(log_path, "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnjax.training.sweeps.worker"],
        stdin=subprocess.PIPE, stdout=log_file, stderr=subprocess.STDOUT,
        preexec_fn=lambda: _pin_and_follow_parent(cores),
        cwd=os.getcwd(),
    )
    log_file.close()
    process.stdin.write(pickle.dumps((config, workdir, meta, cache_settings())))
    process.stdin.close()
    return process


def _error_line(log_path: str) -> str:
    with open(log_path, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1]


def run_local_workers(jobs, workers: int, log=print, poll_s: float = 0.2) -> list[tuple[str, str]]:
    """Run the trials in ``workers`` processes at a time, each pinned to its own share of the cores.

    Each worker's output goes to ``<trial>/sweep_worker.log``. XLA sizes its thread pool from the cores a
    process may use, so a worker pinned to one core trains on one thread.
    """
    shares = split_cores(available_cores(), workers)
    pending = list(enumerate(jobs, 1))
    running: dict[int, tuple] = {}  # slot -> (process, meta, log path, n)
    failures = []
    while pending or running:
        for slot in range(workers):
            if slot not in running and pending:
                n, job = pending.pop(0)
                path = os.path.join(job[1], "sweep_worker.log")
                log(f"[{n}/{len(jobs)}] {job[2]['name']} (worker {slot}, cores {shares[slot]})")
                running[slot] = (_start_worker(job, shares[slot], path), job[2], path, n)
        time.sleep(poll_s)
        for slot, (process, meta, path, n) in list(running.items()):
            if process.poll() is None:
                continue
            del running[slot]
            if process.returncode != 0:
                failures.append((meta["name"], f"exit {process.returncode}: {_error_line(path)}"))
                log(f"[{n}/{len(jobs)}] {meta['name']} failed: {failures[-1][1]}")
    return failures


def require_submitit():
    """``import submitit`` or a one-line error saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise ValueError("executor='submitit' needs the submitit package, which is not installed; "
                         "install it with: pip install -e \".[cluster]\"") from None
    return submitit


def submitit_trial(config, workdir: str, meta: dict, caches: dict | None = None) -> dict:
    """The function a submitit job runs: one trial, one process, no ``jax.distributed``; ``caches`` from
    :func:`cache_settings` of the submitting process."""
    from cnnjax.training.sweeps.trial import run_trial

    if caches is not None:
        use_cache_settings(caches)
    return run_trial(config, workdir, meta)


def run_submitit(jobs, folder: str, cluster: str = "slurm", parameters: dict | None = None, wait: bool = True,
                 log=print) -> list[tuple[str, str]]:
    """Submit the trials as one job array (``map_array``) through submitit; wait for them unless ``wait=False``.

    ``cluster``: "slurm" (``sbatch``), "local" (each job its own local process; no Slurm needed) or "debug"
    (in this process). ``parameters`` go to ``update_parameters`` (e.g. ``slurm_partition``, ``timeout_min``,
    ``cpus_per_task``, ``slurm_array_parallelism``). Logs are in ``folder``.
    """
    submitit = require_submitit()
    if cluster not in SUBMITIT_CLUSTERS:
        raise ValueError(f"submitit cluster={cluster!r} is unknown; allowed: {', '.join(SUBMITIT_CLUSTERS)}")
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(**{"timeout_min": 60, **(parameters or {})})
    configs, workdirs, metas = zip(*jobs)
    caches = [cache_settings()] * len(jobs)
    submitted = executor.map_array(submitit_trial, list(configs), list(workdirs), list(metas), caches)
    log(f"submitted {len(submitted)} trial(s) through submitit ({cluster}): job ids "
        f"{', '.join(str(j.job_id) for j in submitted)}; logs in {folder}")
    if not wait:
        return []
    failures = []
    for job, meta in zip(submitted, metas):
        try:
            job.result()
            log(f"{meta['name']}: done (job {job.job_id})")
        except Exception as e:  # noqa: BLE001 - a failed job: report it, collect the others
            failures.append((meta["name"], f"job {job.job_id}: {(str(e).strip().splitlines() or ['failed'])[-1]}"))
            log(f"{meta['name']} failed: {failures[-1][1]}")
    return failures
