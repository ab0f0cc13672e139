"""Flax networks and a name -> constructor registry: ``get_model(name, num_classes=..., **kwargs)``."""

from __future__ import annotations

from cnnjax.models.lenet import LeNet5

MODELS = {
    "lenet5": LeNet5,
}


def get_model(name: str, num_classes: int = 10, **kwargs):
    """Build the model registered under ``name``."""
    if name not in MODELS:
        raise ValueError(f"model.name={name!r} is unknown; available: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes=num_classes, **kwargs)


__all__ = ["MODELS", "LeNet5", "get_model"]
