"""ResNet (He et al. 2015, 2016): residual blocks ``a(k+2) = g(z(k+2) + a(k))`` (seed 001).

ImageNet family ``resnet18/34/50/101/152`` (7x7/2 stem + 3x3/2 max-pool, widths 64-128-256-512, projection
shortcuts where the shape changes; layer names and parameter counts as torchvision, stride on the 3x3
conv of the bottleneck as torchvision's "v1.5"), and the CIFAR family ``resnet20/32/44/56/110``
(3x3 stem, widths 16-32-64, option-A identity shortcuts: stride-2 subsampling and zero-padded channels).

Parameter counts (``params`` collection, 1000 classes): 11,689,512 / 21,797,672 / 25,557,032 /
44,549,160 / 60,192,808; CIFAR (10 classes): 269,722 / 464,154 / 658,586 / 853,018 / 1,727,962.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.layers import STANDARD, GlobalAvgPool, MaxPool, ModuleDef
from cnnjax.models.common import batch_norm, check_input, require_module_defs

kaiming_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class ResidualBlock(nn.Module):
    """Basic (two 3x3 convs) or bottleneck (1x1 -> 3x3 -> 1x1, expansion 4) residual block.

    ``z`` = the block's last BatchNorm output, ``a(k)`` = the block input (or its projection / option-A
    padding when the shape changes): output ``relu(z + shortcut(a(k)))``. ``conv`` builds the 3x3 convs;
    the 1x1 convs (bottleneck, projection) are standard.
    """

    features: int
    strides: int = 1
    bottleneck: bool = False
    shortcut: str = "projection"  # "projection" (option B) or "identity" (option A)
    conv: ModuleDef = STANDARD
    zero_init_residual: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        expansion = 4 if self.bottleneck else 1
        out_features = self.features * expansion
        needs_shortcut = self.strides != 1 or x.shape[-1] != out_features
        last_bn_init = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones

        def conv(features, kernel, strides, name):
            make = self.conv if kernel > 1 else STANDARD
            return make(
                features,
                kernel,
                strides=strides,
                padding="SAME",
                use_bias=False,
                dtype=self.dtype,
                name=name,
                kernel_init=kaiming_out,
            )

        residual = x
        if needs_shortcut:
            if self.shortcut == "projection":
                residual = conv(out_features, 1, self.strides, "downsample_conv")(x)
                residual = batch_norm(train, self.dtype, "downsample_bn")(residual)
            else:  # option A: subsample, then pad the new channels with zeros (half on each side)
                residual = x[:, :: self.strides, :: self.strides, :]
                extra = out_features - x.shape[-1]
                residual = jnp.pad(residual, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))

        if self.bottleneck:
            y = nn.relu(batch_norm(train, self.dtype, "bn1")(conv(self.features, 1, 1, "conv1")(x)))
            y = nn.relu(batch_norm(train, self.dtype, "bn2")(conv(self.features, 3, self.strides, "conv2")(y)))
            y = batch_norm(train, self.dtype, "bn3", scale_init=last_bn_init)(conv(out_features, 1, 1, "conv3")(y))
        else:
            y = nn.relu(batch_norm(train, self.dtype, "bn1")(conv(self.features, 3, self.strides, "conv1")(x)))
            y = batch_norm(train, self.dtype, "bn2", scale_init=last_bn_init)(conv(self.features, 3, 1, "conv2")(y))
        return nn.relu(y + residual)  # a(k+2) = g(z(k+2) + a(k))


class ResNet(nn.Module):
    """A ResNet; the presets below fix the depth. Returns float32 logits, or with ``include_top=False``
    the last feature map ``(N, h, w, C)`` (add :class:`TransferNet`'s global-average-pool + dense head).

    Attributes:
      stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
      bottleneck: bottleneck blocks (ResNet-50 and deeper) instead of basic ones.
      widths: block width per stage (bottleneck outputs are 4x wider).
      stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool), "cifar" (3x3/1 conv, no pool; also the choice
        for 28x28 grayscale input).
      stem_width: channels of the stem conv.
      shortcut: "projection" (1x1 conv + BN where the shape changes) or "identity" (option A).
      conv: module factory for every 3x3 conv of the blocks (a :data:`cnnjax.layers.ModuleDef`).
      conv_stem: also switch the stem conv.
      zero_init_residual: start each block's last BN scale at 0 (off, as torchvision's default).
    """

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    bottleneck: bool = False
    widths: Sequence[int] = (64, 128, 256, 512)
    stem: str = "imagenet"
    stem_width: int = 64
    shortcut: str = "projection"
    num_classes: int = 1000
    include_top: bool = True
    conv: ModuleDef = STANDARD
    conv_stem: bool = False
    zero_init_residual: bool = False
    name_for_errors: str = "resnet"
    dtype: Any = jnp.float32

    def validate(self) -> None:
        """The architecture arguments (the conv variant is checked by each conv at init)."""
        name = self.name_for_errors
        if self.stem not in ("imagenet", "cifar"):
            raise ValueError(f"{name}: stem={self.stem!r} is unknown; allowed: 'imagenet', 'cifar'")
        if self.shortcut not in ("projection", "identity"):
            raise ValueError(f"{name}: shortcut={self.shortcut!r} is unknown; allowed: 'projection', 'identity'")
        if len(self.stage_sizes) != len(self.widths):
            raise ValueError(
                f"{name}: stage_sizes={tuple(self.stage_sizes)} and widths={tuple(self.widths)} "
                "must have the same length"
            )
        require_module_defs(name, conv=self.conv)

    @nn.compact
    def __call__(self, x, train: bool = False):
        self.validate()
        check_input(x, self.name_for_errors, 1)
        x = x.astype(self.dtype)
        stem_conv = functools.partial(
            self.conv if self.conv_stem else STANDARD,
            padding="SAME",
            use_bias=False,
            dtype=self.dtype,
            name="conv1",
            kernel_init=kaiming_out,
        )
        if self.stem == "imagenet":
            x = stem_conv(self.stem_width, 7, strides=2)(x)
            x = nn.relu(batch_norm(train, self.dtype, "bn1")(x))
            x = MaxPool(3, 2, "SAME", name="maxpool")(x)
        else:
            x = stem_conv(self.stem_width, 3)(x)
            x = nn.relu(batch_norm(train, self.dtype, "bn1")(x))
        for i, (n, width) in enumerate(zip(self.stage_sizes, self.widths)):
            for j in range(n):
                x = ResidualBlock(
                    width,
                    strides=2 if (i > 0 and j == 0) else 1,
                    bottleneck=self.bottleneck,
                    shortcut=self.shortcut,
                    conv=self.conv,
                    zero_init_residual=self.zero_init_residual,
                    dtype=self.dtype,
                    name=f"layer{i + 1}_{j}",
                )(x, train)
        if not self.include_top:
            return x
        x = GlobalAvgPool(name="avgpool")(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x).astype(jnp.float32)


_IMAGENET = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
}


def imagenet_resnet(depth: int):
    """Constructor ``f(num_classes=1000, **kwargs) -> ResNet`` for ResNet-``depth`` (18, 34, 50, 101, 152)."""
    stages, bottleneck = _IMAGENET[depth]

    def build(num_classes: int = 1000, **kwargs) -> ResNet:
        defaults = dict(stage_sizes=stages, bottleneck=bottleneck, name_for_errors=f"resnet{depth}")
        defaults.update(kwargs)
        return ResNet(num_classes=num_classes, **defaults)

    build.__name__ = f"resnet{depth}"
    build.__doc__ = f"ResNet-{depth} (ImageNet layout; ``stem='cifar'`` for small inputs)."
    return build


def cifar_resnet(depth: int):
    """Constructor for the CIFAR ResNet-``depth`` (``depth = 6n + 2``: n basic blocks per stage)."""
    if (depth - 2) % 6:
        raise ValueError(f"depth={depth} must be 6n + 2 for a CIFAR ResNet")
    n = (depth - 2) // 6

    def build(num_classes: int = 10, **kwargs) -> ResNet:
        defaults = dict(
            stage_sizes=(n, n, n),
            widths=(16, 32, 64),
            stem="cifar",
            stem_width=16,
            shortcut="identity",
            name_for_errors=f"resnet{depth}",
        )
        defaults.update(kwargs)
        return ResNet(num_classes=num_classes, **defaults)

    build.__name__ = f"resnet{depth}"
    build.__doc__ = f"CIFAR ResNet-{depth}: 3 stages x {n} basic blocks, widths 16-32-64, option-A shortcuts."
    return build


class TransferNet(nn.Module):
    """Transfer learning (seed 003): a ResNet backbone without its top + global-average-pool + dense head.

    Parameters live in two subtrees, ``backbone`` and ``head``, so a frozen-backbone run trains only
    ``params['head']`` (e.g. ``optax.multi_transform``) and pretrained weights go into
    ``params['backbone']`` (see :func:`cnnjax.models.torch_import.load_torchvision_resnet`).
    Pass ``train=False`` for the backbone's BatchNorm when it is frozen: ``freeze_backbone_bn=True``.
    ``conv`` is handed to the backbone (its 3x3 convs); other backbone options go in ``backbone_kwargs``.
    """

    backbone: str = "resnet50"
    num_classes: int = 10
    conv: ModuleDef = STANDARD
    backbone_kwargs: Any = None
    freeze_backbone_bn: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        from cnnjax.models import RESNETS  # noqa: PLC0415

        if self.backbone not in RESNETS:
            raise ValueError(f"transfer: backbone={self.backbone!r} is unknown; available: {', '.join(RESNETS)}")
        kwargs = dict(self.backbone_kwargs or {})
        if "conv" in kwargs:
            raise ValueError(
                "transfer: backbone_kwargs must not set 'conv'; give it to the model: get_model('transfer', conv=...)"
            )
        net = RESNETS[self.backbone](include_top=False, conv=self.conv, dtype=self.dtype, name="backbone", **kwargs)
        features = net(x, train=train and not self.freeze_backbone_bn)
        pooled = GlobalAvgPool(name="avgpool")(features)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(pooled).astype(jnp.float32)
