"""cnnjax: a JAX/Flax functional research codebase for convolutional neural networks."""

from cnnjax import xla_defaults as _xla_defaults

_xla_defaults.apply()

__version__ = "0.1.0"
