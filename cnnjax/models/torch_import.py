"""Import torchvision ResNet weights (a ``state_dict`` saved as ``.pth``) into :class:`cnnjax.models.ResNet`.

Seed 003 (transfer learning) starts from an ImageNet-trained ResNet-50. Here the user supplies the file
(nothing is downloaded), e.g. made once where torchvision is installed::

    torch.save(torchvision.models.resnet50(weights="IMAGENET1K_V2").state_dict(), "resnet50.pth")

then::

    from cnnjax.models import get_model
    from cnnjax.models.torch_import import load_torchvision_resnet
    model = get_model("resnet50", num_classes=1000)
    variables = load_torchvision_resnet("resnet50.pth", model)          # {"params", "batch_stats"}
    logits = model.apply(variables, images_nhwc, train=False)

Layouts: conv weights OIHW -> HWIO, dense ``(out, in)`` -> ``(in, out)``; BatchNorm ``weight, bias`` ->
``params`` ``scale, bias`` and ``running_mean, running_var`` -> ``batch_stats`` ``mean, var``; the input
images must be NHWC (PyTorch's are NCHW) and preprocessed as the weights expect (ImageNet mean/std).
Names: ``layer2.0.downsample.0`` -> ``layer2_0/downsample_conv``, ``downsample.1`` -> ``downsample_bn``.
Only the "standard" conv variant has torchvision counterparts.
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import numpy as np

from cnnjax.layers import STANDARD

_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.(.+)$")


def _require_torch():
    try:
        import torch  # noqa: PLC0415
    except ImportError as err:
        raise ImportError(
            "reading a PyTorch .pth file needs the 'torch' package (CPU build is enough: "
            "pip install torch --index-url https://download.pytorch.org/whl/cpu); "
            "alternatively pass a dict of NumPy arrays"
        ) from err
    return torch


def read_state_dict(source) -> dict[str, np.ndarray]:
    """A ``{name: numpy array}`` dict from a ``.pth`` path or an in-memory state dict (tensors or arrays).

    Accepts a whole checkpoint with a ``"state_dict"`` entry, and strips DataParallel's ``module.`` prefix.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"state dict file {path!r} does not exist")
        torch = _require_torch()
        source = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(source, dict):
        raise TypeError(f"state dict must be a dict of tensors or a path, got {type(source).__name__}")
    if "state_dict" in source and isinstance(source["state_dict"], dict):
        source = source["state_dict"]
    out = {}
    for key, value in source.items():
        key = key.removeprefix("module.")
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        out[key] = np.asarray(value)
    return out


def _target(key: str) -> tuple[str, tuple[str, ...], str] | None:
    """torchvision name -> (collection, flax path, conversion) or None to skip."""
    parts = key.split(".")
    if parts[-1] == "num_batches_tracked":
        return None
    match = _BLOCK.match(key)
    if match:
        scope = (f"layer{match.group(1)}_{match.group(2)}",)
        rest = match.group(3).split(".")
        if rest[0] == "downsample":
            rest = ["downsample_conv" if rest[1] == "0" else "downsample_bn", *rest[2:]]
    else:
        scope, rest = (), parts
    module, leaf = rest[0], rest[-1]
    if len(rest) != 2:
        raise ValueError(f"state dict key {key!r} is not a torchvision ResNet parameter")
    path = (*scope, module)
    if module.startswith("conv") or module == "downsample_conv":
        if leaf != "weight":
            raise ValueError(f"state dict key {key!r}: torchvision ResNet convs have no {leaf!r}")
        return "params", (*path, "kernel"), "conv"
    if module.startswith("bn") or module == "downsample_bn":
        return {
            "weight": ("params", (*path, "scale"), "copy"),
            "bias": ("params", (*path, "bias"), "copy"),
            "running_mean": ("batch_stats", (*path, "mean"), "copy"),
            "running_var": ("batch_stats", (*path, "var"), "copy"),
        }[leaf]
    if module == "fc":
        return "params", (*path, "kernel" if leaf == "weight" else "bias"), "dense" if leaf == "weight" else "copy"
    raise ValueError(f"state dict key {key!r} is not a torchvision ResNet parameter")


def torchvision_resnet_to_flax(state_dict, include_top: bool = True) -> dict[str, Any]:
    """Convert a torchvision ResNet state dict into ``{"params": ..., "batch_stats": ...}`` (NumPy leaves).

    ``include_top=False`` drops ``fc`` (for ``ResNet(include_top=False)`` / a transfer backbone).
    """
    state = read_state_dict(state_dict)
    variables: dict[str, dict] = {"params": {}, "batch_stats": {}}
    for key, value in state.items():
        if not include_top and key.startswith("fc."):
            continue
        target = _target(key)
        if target is None:
            continue
        collection, path, conversion = target
        if conversion == "conv":
            if value.ndim != 4:
                raise ValueError(f"{key}: expected an OIHW conv weight, got shape {value.shape}")
            value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif conversion == "dense":
            value = value.T  # (out, in) -> (in, out)
        node = variables[collection]
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = np.ascontiguousarray(value, dtype=np.float32)
    return variables


def _flat(tree, prefix=()):
    if isinstance(tree, dict) or hasattr(tree, "items"):
        for k, v in tree.items():
            yield from _flat(v, (*prefix, k))
    else:
        yield prefix, tree


def check_against(variables, model, input_shape=(1, 224, 224, 3)) -> None:
    """Raise a ValueError listing missing / unexpected / mis-shaped entries versus ``model``'s own variables."""
    expected = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), np.zeros(input_shape, np.float32)))
    problems = []
    for collection in ("params", "batch_stats"):
        want = {p: tuple(v.shape) for p, v in _flat(expected.get(collection, {}))}
        have = {p: tuple(np.shape(v)) for p, v in _flat(variables.get(collection, {}))}
        for p in sorted(set(want) - set(have)):
            problems.append(f"missing {collection}/{'/'.join(p)} {want[p]}")
        for p in sorted(set(have) - set(want)):
            problems.append(f"unexpected {collection}/{'/'.join(p)} {have[p]}")
        for p in sorted(set(want) & set(have)):
            if want[p] != have[p]:
                problems.append(f"{collection}/{'/'.join(p)}: file has {have[p]}, the model needs {want[p]}")
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... ({len(problems)} problems)" if len(problems) > 8 else "")
        raise ValueError(f"the state dict does not fit this model: {shown}")


def load_torchvision_resnet(source, model=None, include_top: bool | None = None, input_shape=(1, 224, 224, 3)):
    """Read a torchvision ResNet ``.pth`` (or state dict) into Flax variables for ``model``.

    Args:
      source: path to a ``.pth`` state dict, or the dict itself.
      model: the :class:`cnnjax.models.ResNet` to load into (optional): its ``include_top`` decides
        whether ``fc`` is kept, and the variables are checked against its shapes.
      include_top: keep ``fc``; defaults to ``model.include_top`` (or True without a model).
      input_shape: an input the model accepts, used only to work out its variable shapes.

    Returns:
      ``{"params": ..., "batch_stats": ...}`` with ``jax.numpy`` arrays.
    """
    if model is not None:
        conv = getattr(model, "conv", STANDARD)
        if conv != STANDARD or getattr(model, "conv_stem", False):
            raise ValueError(f"torchvision weights need conv='standard' (no conv_stem); the model has conv='{conv}'")
        if include_top is None:
            include_top = model.include_top
    variables = torchvision_resnet_to_flax(source, include_top=True if include_top is None else include_top)
    if model is not None:
        check_against(variables, model, input_shape)
    return jax.tree_util.tree_map(jax.numpy.asarray, variables)


def into_transfer(backbone_variables, transfer_variables):
    """Put imported backbone variables (``include_top=False``) into a :class:`TransferNet`'s variables.

    The head keeps its fresh initialisation; the backbone's ``params``/``batch_stats`` are replaced.
    """
    params = dict(transfer_variables["params"])
    params["backbone"] = backbone_variables["params"]
    out = dict(transfer_variables)
    out["params"] = params
    out["batch_stats"] = {**transfer_variables.get("batch_stats", {}), "backbone": backbone_variables["batch_stats"]}
    return out
