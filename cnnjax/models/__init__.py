"""Flax networks and a name -> constructor registry: ``get_model(name, num_classes=..., **kwargs)``.

Every model is called as ``model.apply(variables, images, train=bool)`` (NHWC float input) and returns
float32 logits; models with BatchNorm keep its statistics in the ``batch_stats`` collection. Every model
takes its convolution as ``conv=`` (a module factory, flax's ``ModuleDef``); ``get_model`` accepts a spec
string there ("standard", "depthwise", "separable", "grouped:G", "dilated:D", "deformable", "deformable_v2",
"locally_connected") and resolves it once with :func:`cnnjax.layers.conv_variant`. LeNet-5, the small CNN
and the dilated CNN also take their pooling, ``pool=`` ("max", the default, or "avg"; :data:`cnnjax.layers.POOLING`).
"""

from __future__ import annotations

from cnnjax.layers import conv_variant, pooling
from cnnjax.models.dilated import DilatedCNN
from cnnjax.models.inception import InceptionModule, SmallGoogLeNet
from cnnjax.models.lenet import LeNet5, LeNet5Classic
from cnnjax.models.resnet import ResidualBlock, ResNet, TransferNet, cifar_resnet, imagenet_resnet
from cnnjax.models.small_cnn import SmallCNN

RESNETS = {f"resnet{d}": imagenet_resnet(d) for d in (18, 34, 50, 101, 152)}
RESNETS.update({f"resnet{d}": cifar_resnet(d) for d in (20, 32, 44, 56, 110)})

MODELS = {
    "lenet5": LeNet5,
    "lenet5_classic": LeNet5Classic,
    **RESNETS,
    "inception": SmallGoogLeNet,
    "dilated_cnn": DilatedCNN,
    "transfer": TransferNet,
    "small_cnn": SmallCNN,
}


def get_model(name: str, num_classes: int = 10, **kwargs):
    """Build the model registered under ``name`` (see ``MODELS``); ``conv`` / ``pool`` spec strings become modules.

    Raises:
      ValueError: unknown ``name``, ``num_classes`` not a positive int, or a bad ``conv`` / ``pool`` spec.
      TypeError: a keyword argument the model does not take.
    """
    if name not in MODELS:
        raise ValueError(f"model.name={name!r} is unknown; available: {', '.join(sorted(MODELS))}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be a positive int (the number of output classes)")
    if "conv" in kwargs and not callable(kwargs["conv"]):  # a spec string (anything else gets its error)
        kwargs["conv"] = conv_variant(kwargs["conv"])
    if "pool" in kwargs and not callable(kwargs["pool"]):  # "max" / "avg"
        kwargs["pool"] = pooling(kwargs["pool"])
    try:
        return MODELS[name](num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise TypeError(f"model {name!r}: bad keyword argument in {sorted(kwargs)}: {e}") from None


__all__ = [
    "MODELS",
    "RESNETS",
    "DilatedCNN",
    "InceptionModule",
    "LeNet5",
    "LeNet5Classic",
    "ResNet",
    "ResidualBlock",
    "SmallCNN",
    "SmallGoogLeNet",
    "TransferNet",
    "get_model",
]
