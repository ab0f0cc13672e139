"""Resolve ``--config=NAME[:arg]`` to ``configs/NAME.py[:arg]`` and run an entry point with one-line errors.

``run_app(main)`` is how every entry point (run, sweep, summary) starts: a config mistake (an unknown
config name or file, an unknown ``--config.x.y`` field -- with the closest existing names --, a bad value)
or a user error raised by cnnjax prints ``error: ...`` on one line and exits 1, never a traceback.
``TrainingInterrupted`` (SIGINT/SIGTERM) prints ``interrupted at step N; rerun the same command to resume``
and exits 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import signal

import configs


class UnknownConfigError(ValueError):
    """A bare config name with no file in configs/."""


def resolve_config(value: str) -> str:
    """``lenet`` -> ``/abs/configs/lenet.py``; ``lenet:arg`` keeps ``:arg``; a path is returned as given."""
    name, sep, arg = value.partition(":")
    if name.endswith(".py") or os.sep in name or "/" in name:
        if not os.path.isfile(name):
            raise UnknownConfigError(f"--config={value!r}: no config file {name!r}"
                                     + (f" (from {os.getcwd()})" if not os.path.isabs(name) else ""))
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


def _load_config(value: str):
    """The config of ``--config=PATH[:arg]`` (a resolved value) without command-line overrides, or None."""
    path, _, arg = value.partition(":")
    try:
        spec = importlib.util.spec_from_file_location("_config_for_error_message", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config(arg) if arg else module.get_config()
    except Exception:  # noqa: BLE001 - only used to improve an error message
        return None


def unknown_override(argv: list[str]) -> str | None:
    """A one-line message for the first ``--config.a.b=v`` of ``argv`` naming a field the config lacks.

    The message names the missing part and the closest existing fields (``difflib``); None if every
    override names an existing field.
    """
    value = next((a[len("--config="):] for a in argv if a.startswith("--config=")), None)
    if value is None and "--config" in argv[:-1]:
        value = argv[argv.index("--config") + 1]
    config = _load_config(value) if value else None
    if config is None:
        return None
    for a in argv:
        if not a.startswith("--config."):
            continue
        dotted = a[len("--config."):].split("=", 1)[0]
        node, parents = config, []
        for part in dotted.split("."):
            if not hasattr(node, "keys"):
                return (f"--config.{dotted}: {'.'.join(parents)} is a value ({node!r}), not a group of fields")
            if part not in node:
                where = ".".join(parents) or "the config"
                keys = [str(k) for k in node.keys()]
                close = difflib.get_close_matches(part, keys, n=3, cutoff=0.6)
                hint = (f"did you mean {', '.join(close)}?" if close
                        else f"{where} has: {', '.join(sorted(keys)) or 'no fields'}")
                extra = (" (model keyword arguments must be declared in the config file to be set here)"
                         if parents[-2:] == ["model", "kwargs"] or parents == ["model", "kwargs"] else "")
                return f"--config.{dotted}: {where} has no field {part!r}; {hint}{extra}"
            node, parents = node[part], parents + [part]
    return None


def _flag_error_line(argv: list[str], error: Exception) -> str:
    """One line for an error raised while parsing the flags (absl's message may hold a whole traceback)."""
    unknown = unknown_override(argv)
    if unknown:
        return unknown
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        return (lines[0].rstrip(":") + ": " if lines else "") + lines[-1]  # the flag, then the exception
    return " ".join(lines)[:500] or type(error).__name__


USER_ERRORS = (ValueError, TypeError, FileNotFoundError, PermissionError, FloatingPointError)


def _parse_flags(argv: list[str]):
    """absl's flag parsing, with any failure (unknown field, bad value, broken config file) as one line."""
    import sys

    from absl import flags

    try:
        return flags.FLAGS(argv)
    except Exception as e:  # noqa: BLE001 - every flag/config failure is a user mistake
        sys.exit(f"error: {_flag_error_line(argv, e)}")


def _one_line_cnnjax_warnings() -> None:
    """Show cnnjax's own warnings (an unreadable checkpoint, skipped images) as ``warning: ...``, one line."""
    import warnings

    default = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        if category.__module__.startswith("cnnjax"):
            return f"warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = formatwarning


def run_app(main) -> None:
    """Apply the entry points' process defaults, resolve ``--config``, run the absl ``main``; user mistakes and
    interrupts end with one line."""
    import sys

    from absl import app

    from experiments import process_defaults

    _one_line_cnnjax_warnings()
    try:
        process_defaults.apply()  # before anything runs on JAX
        sys.argv = resolve_argv(sys.argv)
    except (UnknownConfigError, ValueError, PermissionError) as e:
        sys.exit(f"error: {e}")
    try:
        app.run(main, flags_parser=_parse_flags)
    except KeyboardInterrupt as e:  # cnnjax's TrainingInterrupted carries the step and the signal
        print(str(e) or "interrupted", file=sys.stderr, flush=True)
        sys.exit(128 + getattr(e, "signum", signal.SIGINT))
    except Exception as e:
        from cnnjax.training.workdir_lock import WorkdirBusyError

        if not isinstance(e, (*USER_ERRORS, WorkdirBusyError)):
            raise
        sys.exit(f"error: {(str(e).strip().splitlines() or [type(e).__name__])[0]}")
