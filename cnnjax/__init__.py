"""cnnjax: a JAX/Flax functional research codebase for convolutional neural networks.

Importing cnnjax changes nothing in the process (no environment edits); the entry points apply their
process-wide defaults themselves (``experiments.process_defaults``).
"""

__version__ = "0.1.0"
