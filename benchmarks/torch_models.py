"""The benchmark's PyTorch contestants: the same architectures as cnnjax's, written in plain torch.

LeNet-5 (modern) mirrors ``cnnjax.models.LeNet5``; ResNet-20 mirrors the CIFAR ResNet of He et al.
2016 (3 stages x 3 basic blocks, 16/32/64 channels, BatchNorm, option-A identity shortcuts:
subsampling and zero-padded channels where the shape changes). Both take uint8 NHWC batches like cnnjax's train step and scale them to
[0, 1] inside the step, and train with Adam (lr 1e-3) and softmax cross-entropy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class LeNet5(nn.Module):
    """conv 5x5x6 SAME -> max-pool 2 -> conv 5x5x16 VALID -> max-pool 2 -> 120 -> 84 -> classes (ReLU)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        flat = 16 * (((image_size // 2) - 4) // 2) ** 2
        self.fc1, self.fc2, self.logits = nn.Linear(flat, 120), nn.Linear(120, 84), nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        return self.logits(F.relu(self.fc2(F.relu(self.fc1(x)))))


def conv3x3(c_in: int, c_out: int, stride: int, variant: str = "standard") -> nn.Module:
    """A 3x3 conv of a residual block as cnnjax's variant ``variant`` builds it: "standard", "grouped:G"
    (``groups=G``) or "separable" (depthwise 3x3, then 1x1; the 1x1 has the bias, here none)."""
    if variant == "separable":
        return nn.Sequential(nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
                             nn.Conv2d(c_in, c_out, 1, bias=False))
    groups = int(variant.split(":")[1]) if variant.startswith("grouped:") else 1
    if variant != "standard" and groups == 1:
        raise ValueError(f"variant={variant!r}: the torch contestants know 'standard', 'grouped:G', 'separable'")
    return nn.Conv2d(c_in, c_out, 3, stride, 1, groups=groups, bias=False)


class BasicBlock(nn.Module):
    """``a(k+2) = relu(BN(conv(relu(BN(conv(a(k)))))) + shortcut(a(k)))`` (seed 003's residual block)."""

    def __init__(self, c_in: int, c_out: int, stride: int, conv: str = "standard"):
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride, conv)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out, 1, conv)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.extra = stride, c_out - c_in

    def shortcut(self, x):
        """Option A (as cnnjax's CIFAR ResNets): subsample, then zero-pad the new channels half each side."""
        if self.stride == 1 and self.extra == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNet20(nn.Module):
    """CIFAR ResNet-20: conv3x3x16 -> 3 stages x 3 blocks (16, 32, 64; stride 2 at stages 2, 3) -> GAP -> fc.
    ``conv``: the variant of the blocks' 3x3 convs (the stem stays standard, as in cnnjax)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, blocks: int = 3, conv: str = "standard"):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers, c = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for b in range(blocks):
                layers.append(BasicBlock(c, width, 2 if stage > 0 and b == 0 else 1, conv))
                c = width
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


MODELS = {"lenet5": LeNet5, "resnet20": ResNet20}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class TorchTrainer:
    """Adam(lr) train step on uint8 NHWC numpy batches moved once to ``device`` (NCHW there).

    ``step()`` runs one step on the stored batch and returns the loss tensor (not synchronised);
    ``sync(loss)`` waits for it. ``compile=True`` wraps the model in ``torch.compile``; ``conv`` is the ResNet's
    conv variant.
    """

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray, *, lr: float = 1e-3,
                 device: str = "cpu", compile: bool = False, seed: int = 0, conv: str = "standard"):
        torch.manual_seed(seed)
        c, size = images.shape[-1], images.shape[1]
        kwargs = {"in_channels": c, "num_classes": 10}
        if conv != "standard":
            kwargs["conv"] = conv
        if name == "lenet5":
            kwargs["image_size"] = size
        self.model = MODELS[name](**kwargs).to(device)
        self.model.train()
        self.device = device
        self.forward = torch.compile(self.model) if compile else self.model
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
        self.labels = torch.from_numpy(labels.astype(np.int64)).to(device)

    def step(self):
        x = self.images.float() / 255.0
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.forward(x), self.labels)
        loss.backward()
        self.opt.step()
        return loss

    def sync(self, loss):
        if self.device != "cpu":
            torch.cuda.synchronize()
        return loss
