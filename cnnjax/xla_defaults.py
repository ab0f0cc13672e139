"""XLA settings cnnjax applies when it is imported, before JAX starts a backend.

XLA:CPU hands dots and convolutions to YNNPACK by default. For cnnjax's small CNNs on a few cores its
fusions scale badly across threads: with them off (XLA's own Eigen kernels) the LeNet-5 train step on two
cores ran at 0.83x PyTorch instead of 0.70x (means of five rounds of
``python -m benchmarks.run --quick --only lenet5`` each), unchanged on one core, ResNet-20 no slower.
The flag only concerns the CPU backend.
"""

from __future__ import annotations

import os

#: Empty list of YNNPACK fusion types = YNNPACK off.
YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="
#: Set to "0" to leave ``XLA_FLAGS`` as it is ("1" or unset: apply the defaults).
OPT_OUT = "CNNJAX_XLA_DEFAULTS"


def apply() -> bool:
    """Append :data:`YNN_OFF` to ``XLA_FLAGS`` unless the user set that flag (to any value) or opted out
    with ``CNNJAX_XLA_DEFAULTS=0``. XLA reads the variable once, when the first backend starts: if JAX
    already ran something, nothing changes. Returns whether the flag was added."""
    choice = os.environ.get(OPT_OUT, "1")
    if choice not in ("0", "1"):
        raise ValueError(f"{OPT_OUT}={choice!r} must be '0' (leave XLA_FLAGS alone) or '1' (apply cnnjax's "
                         "XLA defaults)")
    flags = os.environ.get("XLA_FLAGS", "")
    if choice == "0" or YNN_OFF.rstrip("=") in flags or _backend_started():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {YNN_OFF}".strip()
    return True


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # jax not installed or reorganised: assume nothing has started
        return False
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started and started())
