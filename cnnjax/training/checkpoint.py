"""Checkpoints with orbax ``CheckpointManager``: the train state and the data-iterator state.

``workdir/checkpoints/latest`` keeps the newest ``keep`` checkpoints (saved every N steps and at each
epoch end) and is what a restarted run resumes from; ``workdir/checkpoints/best`` keeps the single
checkpoint with the best validation accuracy. A checkpoint that cannot be read (for example truncated by
a crash) is skipped with a warning and the previous one is used.
"""

from __future__ import annotations

import logging
import os
import warnings

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class CheckpointMismatchError(ValueError):
    """The workdir holds checkpoints of a different model or set-up."""


def _manager(directory: str, keep: int, best: bool) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        enable_async_checkpointing=False,
        best_fn=(lambda m: m["validation_accuracy"]) if best else None,
        best_mode="max",
        cleanup_tmp_directories=True,
    )
    return ocp.CheckpointManager(directory, options=options, item_names=("state", "data"))


class Checkpoints:
    """The latest-N and best-by-validation checkpoint managers of one workdir."""

    def __init__(self, workdir: str, keep: int = 2):
        root = os.path.join(workdir, "checkpoints")
        self.latest = _manager(os.path.join(root, "latest"), keep, best=False)
        self.best_dir = os.path.join(root, "best")
        self._best = None

    def save(self, step: int, tree, data: dict) -> None:
        """Save ``tree`` (arrays) and ``data`` (JSON: iterator position, running sums, identity)."""
        self.latest.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree), data=ocp.args.JsonSave(data)),
                         force=True)

    def save_best(self, step: int, tree, data: dict, validation_accuracy: float) -> None:
        """Offer a checkpoint to the best-by-validation manager (it keeps only the best one)."""
        if self._best is None:
            self._best = _manager(self.best_dir, 1, best=True)
        if step in self._best.all_steps():  # a resumed run reaching a step it had already offered
            return
        self._best.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree), data=ocp.args.JsonSave(data)),
                        metrics={"validation_accuracy": float(validation_accuracy)}, force=True)

    def restore_latest(self, abstract_tree, identity: dict):
        """Restore the newest readable checkpoint: ``(tree, data)``, or ``None`` when there is none.

        ``identity`` (model name, parameter count, ...) must equal what the checkpoint recorded.
        """
        for step in sorted(self.latest.all_steps(), reverse=True):
            try:
                data = self.latest.restore(step, args=ocp.args.Composite(data=ocp.args.JsonRestore())).data
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped
                self._discard(step, e)
                continue
            saved = data.get("identity", {})
            if saved != identity:
                raise CheckpointMismatchError(
                    f"the workdir's checkpoints ({self.latest.directory}) were written for {saved}, but this run is "
                    f"{identity}; use another --workdir or delete the old one"
                )
            try:
                restored = self.latest.restore(
                    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_tree))
                )
            except Exception as e:  # noqa: BLE001
                self._discard(step, e)
                continue
            return restored.state, data
        return None

    def _discard(self, step: int, error: Exception) -> None:
        """Warn about an unreadable checkpoint and move it aside (``unreadable-<step>``), so the resumed
        run can save that step again and nothing is deleted."""
        warnings.warn(f"checkpoint at step {step} is unreadable ({type(error).__name__}: {error}); "
                      "falling back to the previous one", stacklevel=3)
        directory = str(self.latest.directory)
        aside = os.path.join(os.path.dirname(directory), f"unreadable-{step}")
        os.replace(os.path.join(directory, str(step)), aside)
        self.latest.reload()

    def close(self) -> None:
        self.latest.close()
        if self._best is not None:
            self._best.close()


def abstract_tree(tree):
    """Shapes, dtypes and shardings of ``tree``, as orbax needs them for restoring."""
    return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)
