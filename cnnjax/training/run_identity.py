"""A workdir belongs to one run, and the run's identity is its config.

``workdir/config.json`` records the config a run was started with. A later start on the same workdir must
have the same config in every field except the result-neutral ones of ``RESULT_NEUTRAL_FIELDS`` (how the
run is displayed, logged, checkpointed or decoded, never what it computes); otherwise it is refused before
anything is written (``ConfigMismatchError``, listing each differing field with both values).

Extending a finished run (more epochs) is refused in the same way: ``num_epochs`` sets the length of the
learning-rate schedule, so "10 epochs, then 5 more" is not the run "15 epochs". Start a new workdir
instead, from the old weights if wanted (``--config.init_from=OLD_WORKDIR``).
"""

from __future__ import annotations

import json
import os

from cnnjax.training.metrics import to_python

# Fields that do not change any number a run computes (the loss curve, checkpoints' arrays, the summary).
# ``checkpoint_every_steps``/``checkpoint_keep``: resuming from any checkpoint is bitwise exact, so where
# checkpoints are taken changes nothing. ``dataset.num_threads``/``num_workers``: grain's decode parallelism;
# the batches are the same. ``dataset.check_images``: only whether images are decoded once up front.
RESULT_NEUTRAL_FIELDS = (
    "progress_bar",
    "tensorboard",
    "checkpoint_every_steps",
    "checkpoint_keep",
    "dataset.num_threads",
    "dataset.num_workers",
    "dataset.check_images",
)

# Fields added to the config after runs were first recorded, with the value every run recorded before them
# used: a saved config.json without the field compares as if it held that value (such a workdir still resumes).
ADDED_FIELDS = {"loss": "softmax_cross_entropy"}

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"


class ConfigMismatchError(ValueError):
    """The workdir holds a run of another config (the message lists every differing field)."""


def _flatten(tree, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; an empty dict stays a leaf (``{}``) so it is compared too."""
    if isinstance(tree, dict) and tree:
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def _as_json(config) -> dict:
    """A config (ConfigDict or dict) as the plain JSON values ``config.json`` holds (tuples become lists)."""
    tree = config.to_dict() if hasattr(config, "to_dict") else config
    return json.loads(json.dumps(to_python(tree)))


_ABSENT = object()


def config_differences(saved: dict, config) -> list[str]:
    """One line per field (dotted name) whose value differs between ``saved`` and ``config``.

    Fields in ``RESULT_NEUTRAL_FIELDS`` are ignored; a field present on one side only counts as different.
    """
    old, new = _flatten(_as_json(saved)), _flatten(_as_json(config))
    lines = []
    for field in sorted(set(old) | set(new)):
        if field in RESULT_NEUTRAL_FIELDS:
            continue
        a, b = old.get(field, ADDED_FIELDS.get(field, _ABSENT)), new.get(field, _ABSENT)
        if a != b or isinstance(a, bool) != isinstance(b, bool):
            show = [("(absent)" if v is _ABSENT else repr(v)) for v in (a, b)]
            lines.append(f"{field}: {show[0]} in the workdir's run, {show[1]} now")
    return lines


def read_saved_config(workdir: str) -> dict | None:
    """The config recorded in ``workdir/config.json``, or None when there is none."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigMismatchError(f"{path} cannot be read ({e}); this workdir's run is unknown: use another "
                                  "--workdir") from None


def check_same_run(config, workdir: str) -> bool:
    """Raise ``ConfigMismatchError`` if ``workdir`` holds a run of another config; True if it holds this one.

    False when the workdir holds no run (no ``config.json``, no checkpoints, no summary).
    """
    workdir = os.path.abspath(workdir)
    saved = read_saved_config(workdir)
    if saved is None:
        leftovers = [n for n in (SUMMARY_FILE, "checkpoints", "metrics.jsonl") if os.path.exists(os.path.join(workdir, n))]
        if leftovers:
            raise ConfigMismatchError(
                f"workdir {workdir} holds {', '.join(leftovers)} but no {CONFIG_FILE}, so its run's config is "
                "unknown; use another --workdir, or delete that folder to start over")
        return False
    differences = config_differences(saved, config)
    if differences:
        raise ConfigMismatchError(
            f"workdir {workdir} holds a run of another config ({len(differences)} field(s) differ: "
            + "; ".join(differences)
            + "); use another --workdir for this config, or delete that folder to start over")
    return True


def finished_summary(config, workdir: str) -> dict | None:
    """The saved summary if ``workdir`` holds a finished run of ``config``; None if it holds no finished run.

    Raises ``ConfigMismatchError`` if it holds a run (finished or not) of another config. Reads only
    ``config.json`` and ``summary.json``: no data is loaded, nothing is written.
    """
    if not check_same_run(config, workdir):
        return None
    path = os.path.join(os.path.abspath(workdir), SUMMARY_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
