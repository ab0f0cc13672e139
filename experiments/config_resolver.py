"""Resolve ``--config=NAME[:arg]`` to ``configs/NAME.py[:arg]``; paths pass through unchanged."""

from __future__ import annotations

import os

import configs


class UnknownConfigError(ValueError):
    """A bare config name with no file in configs/."""


def resolve_config(value: str) -> str:
    """``lenet`` -> ``/abs/configs/lenet.py``; ``lenet:arg`` keeps ``:arg``; a path is returned as given."""
    name, sep, arg = value.partition(":")
    if name.endswith(".py") or os.sep in name or "/" in name:
        return value
    path = os.path.join(configs.CONFIG_DIR, name + ".py")
    if not os.path.exists(path):
        raise UnknownConfigError(
            f"--config={value!r}: no config named {name!r}; available: {', '.join(configs.available())}"
        )
    return path + sep + arg


def resolve_argv(argv: list[str]) -> list[str]:
    """Rewrite the ``--config`` flag of ``argv`` (``--config=X`` or ``--config X``) with ``resolve_config``."""
    out = list(argv)
    for i, a in enumerate(out):
        if a.startswith("--config="):
            out[i] = "--config=" + resolve_config(a[len("--config="):])
        elif a == "--config" and i + 1 < len(out):
            out[i + 1] = resolve_config(out[i + 1])
    return out


def default_workdir(argv: list[str]) -> str:
    """``runs/<config name>`` for the ``--config`` flag of ``argv``."""
    for a in argv:
        if a.startswith("--config="):
            name = a[len("--config="):].split(":")[0]
            return "runs/" + name.rsplit("/", 1)[-1].removesuffix(".py")
    return "runs/default"


USER_ERRORS = (ValueError, TypeError, FileNotFoundError, PermissionError, FloatingPointError)


def run_app(main) -> None:
    """Apply the entry points' process defaults, resolve ``--config``, run the absl ``main`` and turn a user
    mistake into ``error: ...`` and exit 1."""
    import sys

    from absl import app

    from experiments import process_defaults

    try:
        process_defaults.apply()
        sys.argv = resolve_argv(sys.argv)
    except (UnknownConfigError, ValueError, PermissionError) as e:
        sys.exit(f"error: {e}")
    try:
        app.run(main)
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
