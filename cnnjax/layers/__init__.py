"""Flax modules that wrap the pure ops: they own parameters, the op does the computation."""

from cnnjax.layers.conv import Conv, he_normal

__all__ = ["Conv", "he_normal"]
