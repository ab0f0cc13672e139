"""cnnjax: a JAX/Flax functional research codebase for convolutional neural networks."""

__version__ = "0.1.0"
