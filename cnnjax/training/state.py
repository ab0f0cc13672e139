"""The train state: one pytree with everything a step reads and writes."""

from __future__ import annotations

from typing import Any, Callable

import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """``step``, ``params``, ``batch_stats`` (BatchNorm), ``opt_state``, ``rng``, ``ema_params``.

    ``apply_fn`` and ``tx`` are static (not saved). ``ema_params`` is ``None`` unless an EMA of the
    weights is kept: ``ema <- d * ema + (1 - d) * params`` after every step.
    """

    step: Any
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: Any
    ema_params: Any = None
    apply_fn: Callable = struct.field(pytree_node=False, default=None)
    tx: optax.GradientTransformation = struct.field(pytree_node=False, default=None)

    def variables(self, use_ema: bool = False) -> dict:
        """The variables ``apply_fn`` expects: params (or their EMA) plus BatchNorm statistics if any."""
        params = self.ema_params if use_ema and self.ema_params is not None else self.params
        if self.batch_stats:
            return {"params": params, "batch_stats": self.batch_stats}
        return {"params": params}

    def checkpoint_tree(self) -> dict:
        """The arrays to save; ``apply_fn``/``tx`` are rebuilt from the config."""
        tree = {"step": self.step, "params": self.params, "batch_stats": self.batch_stats,
                "opt_state": self.opt_state, "rng": self.rng}
        if self.ema_params is not None:
            tree["ema_params"] = self.ema_params
        return tree

    def from_checkpoint_tree(self, tree: dict) -> "TrainState":
        return self.replace(**tree)
