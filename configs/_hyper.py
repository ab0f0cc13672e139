"""Sweep building blocks for config files (big_vision's ``get_hyper`` style); pure data, no cnnjax imports.

A sweep is a list of trials; a trial is a dict of dotted-key overrides of the config::

    config.sweep = hyper.product(
        hyper.sweep("model.kwargs.conv", ["standard", "grouped:2"]),
        hyper.sweep("optimizer.learning_rate", [1e-3, 3e-3]),
        hyper.seeds(3),
    )   # 2 x 2 x 3 = 12 trials

``seeds`` is an axis of its own (the ``seed`` field): trials that differ only in their seed are one *point*
of the sweep, reported as mean +- std over its seeds.
"""

import builtins
import itertools

SEED_KEY = "seed"


def sweep(key, values):
    """One axis: ``[{key: v} for v in values]``."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"sweep key={key!r} must be a non-empty dotted config field name such as 'optimizer.name'")
    values = list(values)
    if not values:
        raise ValueError(f"sweep({key!r}, values=[]): give at least one value")
    return [{key: v} for v in values]


def fixed(**overrides):
    """An axis of one trial (keyword names cannot hold dots; use ``sweep`` for dotted keys)."""
    return [dict(overrides)]


def seeds(n, start=0):
    """The seed axis: ``seed = start, ..., start + n - 1``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"seeds(n={n!r}) must be an int >= 1")
    return sweep(SEED_KEY, range(start, start + n))


def _merge(parts):
    trial = {}
    for part in parts:
        clash = sorted(set(trial) & set(part))
        if clash:
            raise ValueError(f"sweep axes both set {clash}; each key may come from one axis only")
        trial.update(part)
    return trial


def product(*axes):
    """Every combination, the last axis varying fastest: ``[a | b for a in A for b in B]``."""
    return [_merge(parts) for parts in itertools.product(*axes)]


def zip(*axes):  # noqa: A001 - hyper.zip, as in big_vision
    """Axes of equal length taken side by side: ``[a_i | b_i for i]``."""
    lengths = [len(a) for a in axes]
    if len(set(lengths)) > 1:
        raise ValueError(f"hyper.zip needs axes of equal length; got lengths {lengths}")
    return [_merge(parts) for parts in builtins.zip(*axes)]


def chain(*sweeps):
    """Sweeps one after another (the union of their trials, in order)."""
    return [dict(t) for s in sweeps for t in s]
