"""Start a run from pretrained weights (``config.init_from``): a workdir of an earlier run (its newest
checkpoint, verified against its saved digest), or a torchvision ResNet ``state_dict`` file (``.pth``)
for a transfer backbone (seed 003)."""

from __future__ import annotations

import os

import jax
import numpy as np

from cnnjax.training.checkpoint import read_newest_verified


def read_pretrained(path: str) -> dict:
    """``{"params": ..., "batch_stats": ...}`` (NumPy leaves) from a workdir or a torchvision ``.pth``."""
    if path.endswith((".pth", ".pt")):
        from cnnjax.models.torch_import import torchvision_resnet_to_flax

        if not os.path.exists(path):
            raise FileNotFoundError(f"init_from={path!r} does not exist")
        return torchvision_resnet_to_flax(path, include_top=False)
    if os.path.isdir(path):
        tree = read_newest_verified(path)
        return {"params": tree["params"], "batch_stats": tree.get("batch_stats", {}) or {}}
    raise ValueError(f"init_from={path!r} must be a workdir with checkpoints or a torchvision .pth file")


def graft(target, source, where: str = ""):
    """Copy ``source`` into the structure of ``target``: every target leaf needs a source leaf of the same shape.

    A source that holds the target under a ``backbone`` key, or holds extra entries (a classifier top),
    still fits.
    """
    if not isinstance(target, dict) and not hasattr(target, "items"):
        if np.shape(source) != np.shape(target):
            raise ValueError(f"pretrained {where or 'value'} has shape {np.shape(source)}, the model needs "
                             f"{np.shape(target)}")
        return jax.numpy.asarray(source, dtype=target.dtype)
    if not isinstance(source, dict) and not hasattr(source, "items"):
        raise ValueError(f"pretrained weights have a single array at {where!r}, the model needs a subtree")
    missing = sorted(set(target) - set(source))
    if missing:
        raise ValueError(f"pretrained weights lack {[f'{where}/{m}'.lstrip('/') for m in missing][:6]} "
                         f"(they have {sorted(source)[:8]})")
    return {k: graft(v, source[k], f"{where}/{k}") for k, v in target.items()}


def load_pretrained(state, path: str):
    """Replace the parameters and BatchNorm statistics of ``state`` with pretrained ones.

    For a model with a ``backbone`` subtree (:class:`cnnjax.models.TransferNet`) only the backbone is
    loaded and the head keeps its fresh initialisation; otherwise every parameter is loaded.
    """
    source = read_pretrained(path)
    params, stats = dict(state.params), dict(state.batch_stats or {})
    if "backbone" in params:
        src_params = source["params"].get("backbone", source["params"])
        src_stats = source["batch_stats"].get("backbone", source["batch_stats"])
        params["backbone"] = graft(params["backbone"], src_params, "params/backbone")
        if "backbone" in stats:
            stats["backbone"] = graft(stats["backbone"], src_stats, "batch_stats/backbone")
    else:
        params = graft(params, source["params"], "params")
        stats = graft(stats, source["batch_stats"], "batch_stats") if stats else stats
    # the EMA starts as a copy, not the same buffers: the train step donates the state, each buffer only once
    ema = jax.tree_util.tree_map(jax.numpy.copy, params) if state.ema_params is not None else None
    return state.replace(params=params, batch_stats=stats, ema_params=ema)
