"""The train state: one pytree with everything a step reads and writes."""

from __future__ import annotations

from typing import Any, Callable

import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """``step``, ``params``, ``batch_stats`` (BatchNorm), ``opt_state``, ``rng``; ``apply_fn``/``tx`` static."""

    step: Any
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: Any
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    def variables(self) -> dict:
        """The variables ``apply_fn`` expects: params plus BatchNorm statistics when there are any."""
        if self.batch_stats:
            return {"params": self.params, "batch_stats": self.batch_stats}
        return {"params": self.params}
