"""Process-wide defaults of cnnjax's entry points (``experiments.*``, ``benchmarks.run``), applied before JAX
starts a backend. A library import changes nothing in the process; the entry points call :func:`apply`.

- **XLA:CPU's YNNPACK fusions off.** XLA:CPU hands dots and convolutions to YNNPACK by default; for
  cnnjax's small CNNs on a few cores its fusions scale badly across threads: with them off (XLA's own
  Eigen kernels) the LeNet-5 train step on two cores ran at 0.83x PyTorch instead of 0.70x (means of five
  rounds of ``python -m benchmarks.run --quick --only lenet5`` each), unchanged on one core.
- **XLA:CPU's concurrency-optimized scheduler off.** That scheduler orders a program so that independent
  operations can run at once, and keeps more buffers alive for it: the ResNet-20 train step at batch 128 needs
  196 MB of working memory instead of 287 MB, which XLA:CPU allocates afresh on every run and the kernel
  faults in page by page (50,000 instead of 74,000 page faults a step, ~55 ms less kernel time). The step ran
  373 / 380 against 418 / 387 ms (``benchmarks.run --quick --only resnet20``, alternating processes); LeNet-5
  is unchanged within the noise.
  Your own setting of either flag in ``XLA_FLAGS`` wins; ``CNNJAX_XLA_DEFAULTS=0`` leaves ``XLA_FLAGS``
  untouched.
- **A persistent compilation cache**, so a second run of the same config starts training without
  recompiling: ``$CNNJAX_CACHE_DIR`` (default ``~/.cache/cnnjax/jax``); ``CNNJAX_CACHE_DIR=`` (empty)
  turns it off. In ``executables/`` of that folder the train loop's compiled programs are also kept keyed
  by config, arguments, code and installed packages (``cnnjax.training.executable_cache``), so that a second
  run does not even trace them.
"""

from __future__ import annotations

import os

#: Empty list of YNNPACK fusion types = YNNPACK off.
YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="
#: XLA:CPU's scheduler then orders a program for memory, not for running independent operations at once.
CONCURRENCY_SCHEDULER_OFF = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
#: The flags :func:`apply_xla_defaults` adds.
XLA_DEFAULTS = (YNN_OFF, CONCURRENCY_SCHEDULER_OFF)
#: Set to "0" to leave ``XLA_FLAGS`` as it is ("1" or unset: apply the defaults).
OPT_OUT = "CNNJAX_XLA_DEFAULTS"
#: The compilation cache folder; set it empty to turn the cache off.
CACHE_DIR = "CNNJAX_CACHE_DIR"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "cnnjax", "jax")


def apply_xla_defaults() -> bool:
    """Append each of :data:`XLA_DEFAULTS` to ``XLA_FLAGS`` unless the user set that flag (to any value), or none
    with ``CNNJAX_XLA_DEFAULTS=0``. XLA reads the variable once, when the first backend starts, so an entry
    point calls this before anything runs on JAX. Returns whether a flag was added."""
    choice = os.environ.get(OPT_OUT, "1")
    if choice not in ("0", "1"):
        raise ValueError(f"{OPT_OUT}={choice!r} must be '0' (leave XLA_FLAGS alone) or '1' (apply cnnjax's "
                         "XLA defaults)")
    flags = os.environ.get("XLA_FLAGS", "")
    added = [] if choice == "0" else [f for f in XLA_DEFAULTS if f.split("=")[0] not in flags]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([flags, *added]).strip()
    return bool(added)


def enable_compilation_cache() -> str | None:
    """Point JAX's persistent compilation cache at ``$CNNJAX_CACHE_DIR`` (default ``~/.cache/cnnjax/jax``)
    and cache every program however quickly it compiled; the train loop's executable cache goes to its
    ``executables/`` folder. Returns the folder, or None when turned off."""
    from cnnjax.training import executable_cache

    folder = os.environ.get(CACHE_DIR, DEFAULT_CACHE_DIR)
    if not folder:
        executable_cache.set_folder(None)
        return None
    folder = os.path.abspath(os.path.expanduser(folder))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise PermissionError(f"{CACHE_DIR}={folder!r} cannot be created ({e.strerror}); set another folder, "
                              f"or {CACHE_DIR}= (empty) to turn the compilation cache off") from e
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    executable_cache.set_folder(os.path.join(folder, "executables"))
    return folder


def apply() -> None:
    """Every default above, for an entry point (call it before anything runs on JAX)."""
    apply_xla_defaults()
    enable_compilation_cache()

