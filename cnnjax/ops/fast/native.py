"""The C++ kernels of the fast paths (``cc/*.cc``): compiled into one library on first use and registered as
XLA FFI targets on the CPU backend; helpers for the JAX primitives that call them (:mod:`.direct`,
:mod:`.channels`).

The library is compiled with the system's C++ compiler (``$CXX``, else ``g++``; ``-O3 -march=native``; jaxlib
ships the FFI headers) into ``$CNNJAX_NATIVE_DIR`` (default ``~/.cache/cnnjax/native``) under a name that hashes
the sources, the flags, the compiler, jaxlib's version and the CPU's features, so a machine builds each version
once (about 10 s on two cores; concurrent processes wait for one build). Where it cannot be built (no compiler) a warning says so once and the dispatch keeps XLA's
formulations; ``CNNJAX_NATIVE=0`` turns it off. The kernels are used only in single-device processes: XLA's
SPMD partitioner would run a custom call on the whole, gathered batch on every device.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import glob
import hashlib
import os
import platform
import subprocess
import tempfile
import threading
import warnings

import jax
import numpy as np

SOURCE_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cc")
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w")
TARGETS = ("cnnjax_direct_conv_forward", "cnnjax_direct_conv_kernel_gradient", "cnnjax_channel_sum",
           "cnnjax_channel_dot", "cnnjax_channel_centered_dot")
_lock = threading.Lock()
_state: dict = {}


def _cpu_features() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _build_folder() -> str:
    folder = os.environ.get("CNNJAX_NATIVE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "cnnjax", "native")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        folder = os.path.join(tempfile.gettempdir(), f"cnnjax-native-{os.getuid()}")
        os.makedirs(folder, exist_ok=True)
    return folder


def _build() -> str:
    """The path of the compiled library, compiling it first if this machine has not yet."""
    compiler = os.environ.get("CXX", "g++")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    files = sorted(glob.glob(os.path.join(SOURCE_FOLDER, "*.cc")) + glob.glob(os.path.join(SOURCE_FOLDER, "*.h")))
    digest = hashlib.sha256()
    for part in [" ".join(FLAGS), version, jax.lib.__version__, _cpu_features()]:
        digest.update(part.encode() + b"\0")
    for file in files:
        with open(file, "rb") as f:
            digest.update(os.path.basename(file).encode() + b"\0" + f.read() + b"\0")
    path = os.path.join(_build_folder(), f"cnnjax-{digest.hexdigest()[:20]}.so")
    with open(os.path.join(os.path.dirname(path), ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process builds, the others wait for its file
        if not os.path.exists(path):
            _compile([f for f in files if f.endswith(".cc")], path, compiler)
    return path


def _compile(sources: list[str], path: str, compiler: str) -> None:
    """Each source to an object file (in parallel: the FFI headers take seconds per file), then the library,
    written under a temporary name and renamed into place."""
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as work:
        objects = [os.path.join(work, os.path.basename(s) + ".o") for s in sources]
        jobs = [subprocess.Popen([compiler, *FLAGS, "-c", f"-I{jax.ffi.include_dir()}", s, "-o", o],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for s, o in zip(sources, objects)]
        results = []
        for job in jobs:
            _, err = job.communicate()
            results.append((job.returncode, err))
        if not any(code for code, _ in results):
            link = subprocess.run([compiler, *FLAGS, *objects, "-o", os.path.join(work, "library.so")],
                                  capture_output=True, text=True)
            results.append((link.returncode, link.stderr))
        for code, err in results:
            if code != 0:
                raise RuntimeError(f"{compiler} failed: {err.strip()[-2000:]}")
        os.replace(os.path.join(work, "library.so"), path)


def available() -> bool:
    """Whether the library is built and its FFI targets registered (building it on the first call)."""
    with _lock:
        if "ok" not in _state:
            _state["ok"] = False
            if os.environ.get("CNNJAX_NATIVE", "1") == "0":
                return False
            try:
                library = ctypes.cdll.LoadLibrary(_build())
                for target in TARGETS:
                    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, target)), platform="cpu")
                _state["ok"] = True
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                warnings.warn(f"cnnjax: the C++ kernels could not be built ({e}); convolutions and BatchNorm use "
                              "XLA's formulations", RuntimeWarning, stacklevel=2)
        return _state["ok"]


def usable() -> bool:
    """The library is available and this process has one device (see the module's docstring)."""
    return jax.device_count() == 1 and available()


def jit_impl(primitive):
    """Outside a trace, run ``primitive`` as a one-op program."""
    return lambda *args, **params: jax.jit(functools.partial(primitive.bind, **params))(*args)


def ffi_lowering(target: str, attributes=lambda **params: {}):
    """The CPU lowering of a primitive to the FFI call ``target``, with int64 attributes ``attributes(**params)``."""
    lowering = jax.ffi.ffi_lowering(target)

    def lower(ctx, *operands, **params):
        if not available():
            raise RuntimeError("cnnjax: the C++ kernels are not available")
        return lowering(ctx, *operands, **{k: np.int64(v) for k, v in attributes(**params).items()})
    return lower
