"""Fault injection through the real CLI (``python -m experiments.run``, real subprocesses, synthetic data):
SIGTERM mid-run then a rerun ends bitwise equal to an uninterrupted run; a second process on a busy workdir
is refused, naming the holder, while the first finishes normally; a SIGKILLed holder leaves no stale lock."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cnnjax.training.workdir_lock import WorkdirBusyError, WorkdirLock
from tests.conftest import REPO_ROOT
from tests.training.run_helpers import CLI_ARGS, cli, results, run_cli, tree_digest


def wait_for(predicate, proc, timeout=240):
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, "the run ended before the test could act on it"
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def lock_holder(workdir) -> str:
    path = workdir / ".lock"
    return path.read_text() if path.exists() else ""


def compiling_env(tmp_path) -> dict:
    """An empty cache folder of the run's own: it compiles its programs, so that a signal sent half a second after
    its start lands mid-run (a config run before loads its programs and may finish within that time)."""
    return {**os.environ, "CNNJAX_CACHE_DIR": str(tmp_path / "cache")}


def test_sigterm_saves_a_checkpoint_and_the_rerun_is_bitwise_equal(busy, tmp_path):
    """The rerun ends bitwise equal to the uninterrupted first run of the ``busy`` fixture."""
    reference = busy["workdir"]
    workdir = tmp_path / "w"
    env = compiling_env(tmp_path)  # the rerun loads the programs this run compiled
    proc = subprocess.Popen(cli(*CLI_ARGS, f"--workdir={workdir}"), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        # config.json is written under the lock, just before the signal handlers go in; the first step
        # (compilation) follows, so a SIGTERM now lands during the run, before its end.
        wait_for(lambda: (workdir / "config.json").exists(), proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith("interrupted at step ")
    step = int(lines[-1].split("interrupted at step ")[1].split(";")[0])
    assert lines[-1] == f"interrupted at step {step}; rerun the same command to resume"
    assert (workdir / "checkpoints" / "latest" / str(step)).is_dir() and not (workdir / "summary.json").exists()
    r = subprocess.run(cli(*CLI_ARGS, f"--workdir={workdir}"), cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed from the checkpoint at step {step} " in r.stdout
    assert results(workdir) == results(reference)


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """A first run, frozen (SIGSTOP) while it holds the workdir's lock; a second process on the same workdir
    meanwhile; then the first continues (SIGCONT) and finishes. Its workdir is the reference run."""
    workdir = tmp_path_factory.mktemp("busy")
    first = subprocess.Popen(cli(*CLI_ARGS, f"--workdir={workdir}"), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: f"pid {first.pid} " in lock_holder(workdir), first)
        first.send_signal(signal.SIGSTOP)
        try:
            before = tree_digest(workdir)
            second = run_cli(*CLI_ARGS, f"--workdir={workdir}")
            unchanged = tree_digest(workdir) == before
        finally:
            first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
    return {"workdir": workdir, "first": first, "first_stderr": err, "second": second, "unchanged": unchanged}


def test_second_process_on_a_busy_workdir_is_refused_while_the_first_finishes(busy):
    workdir, first, second = busy["workdir"], busy["first"], busy["second"]
    assert second.returncode == 1
    (line,) = second.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"error: workdir {workdir} is in use by pid {first.pid} on ")
    assert line.endswith("; wait for that run to finish, or use another --workdir")
    assert busy["unchanged"]  # the refused process wrote nothing
    assert first.returncode == 0, busy["first_stderr"][-3000:]
    assert (workdir / "summary.json").exists() and lock_holder(workdir) == ""  # finished; lock released, emptied


def test_ctrl_c_is_one_line_exit_130_and_leaves_a_checkpoint(tmp_path):
    """Ctrl-C (SIGINT) through the CLI: the run saves a checkpoint and ends with one line and exit code 130."""
    workdir = tmp_path / "w"
    # A child of a shell's background job would inherit an ignored SIGINT; a terminal's Ctrl-C reaches a
    # foreground process with the default disposition, so give the child that.
    proc = subprocess.Popen(cli(*CLI_ARGS, f"--workdir={workdir}"), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=compiling_env(tmp_path),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: (workdir / "config.json").exists(), proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, err[-3000:]
    (line,) = err.strip().splitlines()
    step = int(line.split("interrupted at step ")[1].split(";")[0])
    assert line == f"interrupted at step {step}; rerun the same command to resume"
    assert (workdir / "checkpoints" / "latest" / str(step)).is_dir()


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from cnnjax.training.workdir_lock import WorkdirLock
    WorkdirLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(600)
""")


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WorkdirBusyError, match=rf"is in use by pid {holder.pid} on "):
            WorkdirLock(str(tmp_path)).acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    finally:
        if holder.poll() is None:
            holder.kill()
    lock = WorkdirLock(str(tmp_path)).acquire()  # the kernel released the dead holder's lock
    assert f"pid {os.getpid()} " in lock_holder(tmp_path)
    lock.release()
