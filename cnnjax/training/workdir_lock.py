"""One writer per workdir: an OS lock (``fcntl.flock``) on ``workdir/.lock``.

The kernel releases the lock when its holder's file is closed, also when the process dies (SIGKILL, OOM),
so a crashed run never leaves a stale lock. While held, the file names its holder (pid, host, start time);
it is emptied again on release, so a finished workdir holds an empty ``.lock``. In a multi-process
(``jax.distributed``) run each process locks its own file (``.lock``, ``.lock.process-1``, ...).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time


class WorkdirBusyError(RuntimeError):
    """Another process is writing this workdir."""


def lock_path(workdir: str, process_index: int = 0) -> str:
    return os.path.join(workdir, ".lock" if process_index == 0 else f".lock.process-{process_index}")


class WorkdirLock:
    """``with WorkdirLock(workdir):`` -- hold the workdir's lock or raise ``WorkdirBusyError`` naming the holder."""

    def __init__(self, workdir: str, process_index: int = 0):
        self.path = lock_path(workdir, process_index)
        self._fd = None

    def acquire(self) -> "WorkdirLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 400, 0).decode(errors="replace").strip() or "a process that has just started"
            os.close(fd)
            raise WorkdirBusyError(
                f"workdir {os.path.dirname(self.path)} is in use by {holder}; wait for that run to finish, or "
                "use another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} (since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime())})\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
