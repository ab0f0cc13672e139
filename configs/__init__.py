"""Experiment configs: one ``NAME.py`` per experiment, each with ``get_config(arg=None)``."""

from __future__ import annotations

import os

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))


def available() -> list[str]:
    """Names of the experiment configs in this folder."""
    return sorted(
        f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith(".py") and not f.startswith("_")
    )
