"""A sweep's trials: the config's ``sweep`` field expanded, checked and named, before anything trains.

``config.sweep`` is a list of trials, each a dict of dotted-key overrides of the rest of the config (build it
with ``configs/_hyper.py``: ``product``, ``zip``, ``sweep``, ``seeds``). The older form, a list of
``{"name": ..., "overrides": {...}}``, still works; its ``name`` becomes the trial's folder name.

Every trial's full overrides include its ``seed`` (the base config's seed when the sweep does not set it).
A *point* is a trial's overrides without the seed: trials of one point differ only in their seed.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import re
import string

import ml_collections

from cnnjax.training.metrics import to_python

SEED_KEY = "seed"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=,+-]*$")
SAFE_CHARS = "letters, digits and . _ = , + -"
MAX_NAME_LENGTH = 200


@dataclasses.dataclass(frozen=True)
class Trial:
    """One run of a sweep: its position, folder name, full overrides (seed included) and config."""

    index: int
    name: str
    overrides: dict
    config: ml_collections.ConfigDict

    @property
    def seed(self) -> int:
        return int(self.config.seed)

    @property
    def point(self) -> dict:
        """The overrides without the seed: what this trial's point of the sweep is."""
        return {k: v for k, v in self.overrides.items() if k != SEED_KEY}

    def describe(self) -> str:
        """``name: key=value, ...`` (every override, the seed included)."""
        return f"{self.name}: " + ", ".join(f"{k}={v!r}" for k, v in self.overrides.items())


def _label(index: int, overrides: dict) -> str:
    return f"trial {index} ({', '.join(f'{k}={v!r}' for k, v in overrides.items()) or 'no overrides'})"


def _dotted_fields(node, prefix: str = "") -> list[str]:
    out = []
    for k in node.keys():
        v = node[k]
        out.append(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            out.extend(_dotted_fields(v, prefix + k + "."))
    return out


def _check_type(label: str, key: str, old, new):
    """``new`` converted to the type of the config's ``old`` value, or a TypeError naming trial and field."""
    if old is None:
        return new
    if isinstance(old, bool) or isinstance(new, bool):
        if isinstance(old, bool) and isinstance(new, bool):
            return new
    elif isinstance(old, float) and isinstance(new, (int, float)):
        return float(new)
    elif isinstance(old, int) and isinstance(new, int):
        return new
    elif isinstance(old, (tuple, list)) and isinstance(new, (tuple, list)):
        return type(old)(new)
    elif isinstance(old, ml_collections.ConfigDict) and isinstance(new, (dict, ml_collections.ConfigDict)):
        return ml_collections.ConfigDict(dict(new))
    elif isinstance(old, str) and isinstance(new, str):
        return new
    raise TypeError(f"{label}: override {key}={new!r} is a {type(new).__name__}, but the config's {key} is a "
                    f"{type(old).__name__} ({old!r})")


def apply_overrides(config, overrides: dict, label: str = "sweep override"):
    """A copy of ``config`` with the dotted-key ``overrides`` set; each key must exist and the type must fit.

    Raises:
      ValueError: an unknown field, naming ``label`` and the closest field names.
      TypeError: a value whose type does not fit the field (an int for a float field is fine).
    """
    config = copy.deepcopy(config)
    for dotted, value in overrides.items():
        if not isinstance(dotted, str) or not dotted:
            raise ValueError(f"{label}: override key {dotted!r} must be a dotted config field name")
        node, *parents_leaf = config, *dotted.split(".")
        *parents, leaf = parents_leaf
        walked = []
        for name in parents + [leaf]:
            if not isinstance(node, ml_collections.ConfigDict) or name not in node:
                close = difflib.get_close_matches(dotted, _dotted_fields(config), n=3, cutoff=0.6)
                hint = f"; closest: {', '.join(close)}" if close else ""
                raise ValueError(f"{label}: {dotted!r} is not a config field ({'.'.join(walked + [name])!r} is "
                                 f"unknown){hint}")
            if name != leaf:
                node = node[name]
            walked.append(name)
        new = _check_type(label, dotted, node[leaf], value)
        with node.ignore_type():
            node[leaf] = new
    return config


def _value_text(value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value).replace(":", "-")


def folder_name(overrides: dict, short_keys: dict[str, str]) -> str:
    """``conv=grouped-2,seed=0``: each ``key=value``, with the short key name, ':' written as '-'."""
    return ",".join(f"{short_keys.get(k, k)}={_value_text(v)}" for k, v in overrides.items())


def short_key_names(keys) -> dict[str, str]:
    """Each dotted key's last part when no other key shares it, else the full dotted key."""
    keys = list(dict.fromkeys(keys))
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def check_folder_name(label: str, name, overrides: dict) -> str:
    if not isinstance(name, str) or not SAFE_NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        bad = sorted({c for c in str(name) if c not in string.ascii_letters + string.digits + "._=,+-"})
        culprits = [k for k, v in overrides.items() if any(c in _value_text(v) for c in bad)]
        field = f" (from {', '.join(culprits)})" if culprits else ""
        raise ValueError(
            f"{label}: the folder name {name!r}{field} is unsafe: it must be 1-{MAX_NAME_LENGTH} characters of "
            f"{SAFE_CHARS}, starting with a letter or digit" + (f"; it holds {''.join(bad)!r}" if bad else "")
            + "; give the trial a safe 'name' ({'name': ..., 'overrides': {...}})")
    return name


def _entries(sweep) -> list[tuple[str | None, dict]]:
    """``(explicit name or None, overrides)`` for each element of ``config.sweep`` (both forms)."""
    if isinstance(sweep, (dict, ml_collections.ConfigDict)) or not isinstance(sweep, (list, tuple)):
        raise TypeError(f"config.sweep must be a list of trials (dicts of overrides); got {type(sweep).__name__}")
    out = []
    for i, entry in enumerate(sweep):
        if isinstance(entry, ml_collections.ConfigDict):
            entry = entry.to_dict()
        if not isinstance(entry, dict):
            raise TypeError(f"trial {i}: {entry!r} must be a dict of dotted-key overrides")
        if "overrides" in entry and set(entry) <= {"name", "overrides"}:
            overrides = entry["overrides"]
            overrides = overrides.to_dict() if isinstance(overrides, ml_collections.ConfigDict) else dict(overrides)
            out.append((entry.get("name"), overrides))
        else:
            out.append((None, dict(entry)))
    return out


def base_config(config) -> ml_collections.ConfigDict:
    """``config`` without its ``sweep`` field: what every trial overrides."""
    base = copy.deepcopy(config)
    with base.unlocked():
        if "sweep" in base:
            del base["sweep"]
    return base


def expand_trials(config, check=None) -> list[Trial]:
    """Every trial of ``config.sweep``, checked: fields, types, ``check(trial_config)``, names, duplicates.

    ``check`` (for example the training config's range checks) is called on every trial's config; its
    ValueError/TypeError is re-raised naming the trial. All failures happen here, before anything trains.
    """
    if "sweep" not in config:
        raise ValueError("this config has no 'sweep' field; sweeps are configs like configs/conv_ablation.py")
    entries = _entries(config.sweep)
    if not entries:
        raise ValueError("config.sweep is empty: build it with configs/_hyper.py, e.g. "
                         "product(sweep('model.kwargs.conv', [...]), seeds(3))")
    base = base_config(config)
    short = short_key_names([k for _, o in entries for k in o] + [SEED_KEY])
    trials, by_identity, by_name = [], {}, {}
    for index, (name, overrides) in enumerate(entries):
        label = _label(index, overrides)
        trial_config = apply_overrides(base, overrides, label)
        full = {k: v for k, v in overrides.items() if k != SEED_KEY}
        full[SEED_KEY] = overrides.get(SEED_KEY, trial_config.seed)
        label = _label(index, full)
        if check is not None:
            try:
                check(trial_config)
            except (ValueError, TypeError) as e:
                raise type(e)(f"{label}: {e}") from None
        name = check_folder_name(label, name if name is not None else folder_name(full, short), full)
        identity = json.dumps(to_python(trial_config.to_dict()), sort_keys=True, default=repr)
        if identity in by_identity:
            raise ValueError(f"{label} duplicates trial {by_identity[identity]}: both train the same config")
        if name in by_name:
            raise ValueError(f"{label}: its folder name {name!r} is also trial {by_name[name]}'s")
        by_identity[identity], by_name[name] = index, index
        trials.append(Trial(index, name, full, trial_config))
    return trials


def point_key(trial: Trial) -> str:
    """A stable text key of the trial's point (its overrides without the seed)."""
    return json.dumps(to_python(trial.point), sort_keys=True, default=repr)
