"""Checkpoints with orbax ``CheckpointManager``: the train state and the data-iterator state.

``workdir/checkpoints/latest`` keeps the newest ``keep`` checkpoints (saved every N steps and at each
epoch end) and is what a restarted run resumes from; ``workdir/checkpoints/best`` keeps the single
checkpoint with the best validation accuracy. A checkpoint that cannot be read (for example truncated by
a crash) is skipped with a warning and the previous one is used.

Integrity: orbax/TensorStore store the arrays zstd-compressed without a checksum of their data, so a
damaged file may fail to decode or may decode to wrong values. Therefore every checkpoint's JSON item
carries ``sha256``, a digest of its arrays (path, dtype, shape, bytes) and of the rest of the JSON item.
A restored checkpoint that does not decode or whose digest differs (bit rot, a partial copy, a flipped byte
that still decodes) is moved aside to ``checkpoints/unreadable-<step>[.<n>]`` with a one-line warning, and
the previous checkpoint is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
    """The workdir holds checkpoints of a different model or set-up."""


class UnreadableCheckpointWarning(UserWarning):
    """A checkpoint could not be read or verified; it was moved aside and the previous one is used."""


class CorruptCheckpointError(ValueError):
    """A checkpoint whose arrays or JSON item do not match the digest saved with it."""


def _host_array(leaf) -> np.ndarray:
    """A leaf as one host array (a replicated array of a multi-process run: this process's first shard)."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return np.asarray(leaf.addressable_shards[0].data)
    return np.asarray(leaf)


def _path_name(path) -> str:
    """``opt_state/0/mu/params/conv1/kernel``: the same for a NamedTuple field and the dict orbax restores it as."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def checkpoint_digest(tree, data: dict) -> str:
    """sha256 over every array of ``tree`` (path, dtype, shape, bytes; in path order) and the JSON of ``data``."""
    h = hashlib.sha256()
    leaves = sorted((_path_name(p), leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0])
    for name, leaf in leaves:
        a = np.ascontiguousarray(_host_array(leaf))
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    payload = {k: v for k, v in data.items() if k != "sha256"}
    h.update(json.dumps(payload, sort_keys=True).encode())
    return h.hexdigest()


def _with_digest(tree, data: dict) -> dict:
    return {**data, "sha256": checkpoint_digest(tree, data)}


def verify_digest(step: int, tree, data: dict) -> None:
    """Raise ``CorruptCheckpointError`` unless ``data["sha256"]`` is the digest of ``tree`` and ``data``."""
    saved = data.get("sha256")
    if saved is None:
        raise CorruptCheckpointError(f"checkpoint at step {step} has no sha256 digest")
    actual = checkpoint_digest(tree, data)
    if actual != saved:
        raise CorruptCheckpointError(f"checkpoint at step {step}: sha256 of the restored arrays is "
                                     f"{actual[:12]}..., saved {saved[:12]}...")


def _first_line(error: Exception) -> str:
    """The first line of an error's message, at most 200 characters (TensorStore's errors span pages)."""
    return (str(error).strip().splitlines() or [""])[0][:200]


def _manager(directory: str, keep: int, best: bool) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        enable_async_checkpointing=False,
        best_fn=(lambda m: m["validation_accuracy"]) if best else None,
        best_mode="max",
        cleanup_tmp_directories=True,
    )
    return ocp.CheckpointManager(directory, options=options, item_names=("state", "data"))


def latest_dir(workdir: str) -> str:
    """``workdir/checkpoints/latest``: the newest checkpoints, one ``<step>/{state,data}`` folder each."""
    return os.path.join(workdir, "checkpoints", "latest")


def read_newest_verified(workdir: str) -> dict:
    """The arrays of the newest checkpoint of ``workdir`` (another run's), checked against its saved digest.

    Read only: nothing in ``workdir`` is created, moved or cleaned up. Errors name ``init_from``, the field
    that points at another run's workdir.
    """
    root = latest_dir(workdir)
    steps = sorted(int(d) for d in os.listdir(root) if d.isdigit()) if os.path.isdir(root) else []
    if not steps:
        raise FileNotFoundError(f"init_from={workdir!r} has no checkpoints in {root}")
    step, step_dir = steps[-1], os.path.join(root, str(steps[-1]))
    try:
        tree = ocp.StandardCheckpointer().restore(os.path.abspath(os.path.join(step_dir, "state")))
        with open(os.path.join(step_dir, "data", "metadata")) as f:
            data = json.load(f)
        verify_digest(step, tree, data)
    except Exception as e:  # noqa: BLE001 - arrays that do not decode are as untrustworthy as a wrong digest
        raise CorruptCheckpointError(f"init_from={workdir!r}: the checkpoint at step {step} cannot be trusted "
                                     f"({_first_line(e)}); use another workdir or an earlier checkpoint") from None
    return tree


class Checkpoints:
    """The latest-N and best-by-validation checkpoint managers of one workdir."""

    def __init__(self, workdir: str, keep: int = 2):
        self.latest = _manager(latest_dir(workdir), keep, best=False)
        self.best_dir = os.path.join(workdir, "checkpoints", "best")
        self._best = None

    def save(self, step: int, tree, data: dict) -> None:
        """Save ``tree`` (arrays) and ``data`` (JSON: iterator position, running sums, identity)."""
        data = _with_digest(tree, data)
        self.latest.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree), data=ocp.args.JsonSave(data)),
                         force=True)

    def save_best(self, step: int, tree, data: dict, validation_accuracy: float) -> None:
        """Offer a checkpoint to the best-by-validation manager (it keeps only the best one)."""
        if self._best is None:
            self._best = _manager(self.best_dir, 1, best=True)
        if step in self._best.all_steps():  # a resumed run reaching a step it had already offered
            return
        data = _with_digest(tree, data)
        self._best.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree), data=ocp.args.JsonSave(data)),
                        metrics={"validation_accuracy": float(validation_accuracy)}, force=True)

    def restore_latest(self, abstract_tree, identity: dict):
        """Restore the newest readable, verified checkpoint: ``(tree, data)``, or ``None`` when there is none.

        ``identity`` (model name, parameter count, ...) must equal what the checkpoint recorded. A checkpoint
        that cannot be read or whose digest differs is moved aside and the previous one is tried.
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
                verify_digest(step, restored.state, data)
            except Exception as e:  # noqa: BLE001
                self._discard(step, e)
                continue
            return restored.state, data
        return None

    def _discard(self, step: int, error: Exception) -> None:
        """Move an unreadable checkpoint aside (``unreadable-<step>``, or ``unreadable-<step>.<n>`` when that
        name is taken) with a one-line warning, so the resumed run can save that step again; nothing is deleted."""
        directory = str(self.latest.directory)
        aside = quarantine(os.path.join(directory, str(step)), os.path.join(os.path.dirname(directory),
                                                                            f"unreadable-{step}"))
        warnings.warn(UnreadableCheckpointWarning(
            f"checkpoint at step {step} is unreadable ({type(error).__name__}: {_first_line(error)}); "
            f"moved to {aside}, falling back to the previous one"), stacklevel=2)
        self.latest.reload()

    def close(self) -> None:
        self.latest.close()
        if self._best is not None:
            self._best.close()


def abstract_tree(tree):
    """Shapes, dtypes and shardings of ``tree``, as orbax needs them for restoring."""
    return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)


def quarantine(path: str, aside: str) -> str:
    """Rename ``path`` to ``aside``, or to ``aside.2``, ``aside.3``, ... if taken; return the name used.

    In a multi-process run process 0 renames and every process waits for it.
    """
    target = None
    if jax.process_index() == 0:
        n = 1
        while True:
            target = aside if n == 1 else f"{aside}.{n}"
            if not os.path.lexists(target):
                try:
                    os.rename(path, target)
                    break
                except OSError:  # created meanwhile (or a non-empty directory of that name): try the next
                    if not os.path.lexists(path) or n > 1000:
                        raise
            n += 1
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"quarantine {path}")
    return target or aside
