"""The torchvision-ResNet importer against a plain PyTorch ResNet with torchvision's layer names."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from cnnjax.models import ResNet, TransferNet, get_model  # noqa: E402
from cnnjax.models.torch_import import (  # noqa: E402
    into_transfer,
    load_torchvision_resnet,
    read_state_dict,
    torchvision_resnet_to_flax,
)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # torchvision: stride on the 3x3
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + identity)


KEY = jax.random.PRNGKey(0)


class TorchResNet(nn.Module):
    """torchvision.models.resnet.ResNet, written out (same names: conv1, bn1, layerK.J..., downsample.0/1, fc)."""

    def __init__(self, block, layers, widths, stem_width, num_classes):
        super().__init__()
        self.inplanes = stem_width
        self.conv1 = nn.Conv2d(3, stem_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, (n, w) in enumerate(zip(layers, widths)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, w, n, 1 if i == 0 else 2))
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(torch.mean(x, dim=(2, 3)), 1))


def randomize(model, seed):
    """Random weights AND random BatchNorm running statistics (so eval mode is a real test)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.2)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
    return model.eval()


CASES = {
    "basic": (BasicBlock, (2, 1, 2, 1), (8, 16, 16, 32), 8, False),
    "bottleneck": (Bottleneck, (1, 2, 1, 1), (4, 8, 8, 8), 8, True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_imported_resnet_matches_pytorch_logits(case, tmp_path):
    block, layers, widths, stem_width, bottleneck = CASES[case]
    torch_model = randomize(TorchResNet(block, layers, widths, stem_width, num_classes=11), seed=1)
    path = tmp_path / "resnet.pth"
    torch.save(torch_model.state_dict(), path)

    model = ResNet(stage_sizes=layers, bottleneck=bottleneck, widths=widths, stem_width=stem_width, num_classes=11)
    variables = load_torchvision_resnet(str(path), model, input_shape=(1, 40, 40, 3))

    image = np.random.RandomState(0).rand(2, 3, 40, 40).astype(np.float32)  # odd sizes after striding: 40->20->10->5->3
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(image)).numpy()
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(image.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-4)
    assert np.abs(expected).max() > 0.1  # not a trivially small output


def test_backbone_import_into_transfer_net():
    block, layers, widths, stem_width = BasicBlock, (1, 1, 1, 1), (4, 8, 8, 8), 4
    torch_model = randomize(TorchResNet(block, layers, widths, stem_width, num_classes=11), seed=2)
    backbone_kwargs = dict(stage_sizes=layers, widths=widths, stem_width=stem_width)
    backbone = get_model("resnet18", include_top=False, **backbone_kwargs)
    imported = load_torchvision_resnet(torch_model.state_dict(), backbone, input_shape=(1, 32, 32, 3))
    assert "fc" not in imported["params"]
    transfer = TransferNet(backbone="resnet18", num_classes=3, backbone_kwargs=backbone_kwargs)
    x = jnp.asarray(np.random.RandomState(1).rand(2, 32, 32, 3), jnp.float32)
    rng = np.random.RandomState(2)  # a fresh head: any values do (the backbone's are replaced by the import)
    fresh = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), jax.eval_shape(transfer.init, KEY, x))
    variables = into_transfer(imported, fresh)
    features, transfer_logits = jax.jit(
        lambda a, b, x: (backbone.apply(a, x, train=False), transfer.apply(b, x, train=False))
    )(imported, variables, x)
    with torch.no_grad():
        t = torch.from_numpy(np.array(x).transpose(0, 3, 1, 2))
        t = torch_model.maxpool(torch.relu(torch_model.bn1(torch_model.conv1(t))))
        for i in range(1, 5):
            t = getattr(torch_model, f"layer{i}")(t)
    np.testing.assert_allclose(np.asarray(features), t.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    head = variables["params"]["head"]
    expected = np.asarray(features).mean(axis=(1, 2)) @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
    np.testing.assert_allclose(np.asarray(transfer_logits), expected, rtol=1e-4, atol=1e-4)


def test_layout_conversion_and_names():
    state = {
        "module.conv1.weight": np.arange(2 * 3 * 7 * 7, dtype=np.float32).reshape(2, 3, 7, 7),
        "layer2.0.downsample.0.weight": np.zeros((4, 2, 1, 1), np.float32),
        "layer2.0.downsample.1.running_var": np.ones(4, np.float32),
        "layer2.0.bn1.num_batches_tracked": np.array(3),
        "fc.weight": np.arange(6, dtype=np.float32).reshape(3, 2),
    }
    v = torchvision_resnet_to_flax(state)
    kernel = v["params"]["conv1"]["kernel"]
    assert kernel.shape == (7, 7, 3, 2) and kernel[1, 2, 0, 1] == state["module.conv1.weight"][1, 0, 1, 2]
    assert v["params"]["layer2_0"]["downsample_conv"]["kernel"].shape == (1, 1, 2, 4)
    assert v["batch_stats"]["layer2_0"]["downsample_bn"]["var"].shape == (4,)
    np.testing.assert_array_equal(v["params"]["fc"]["kernel"], state["fc.weight"].T)
    assert "fc" not in torchvision_resnet_to_flax(state, include_top=False)["params"]


def test_mismatched_state_dict_is_a_clear_error():
    torch_model = randomize(TorchResNet(BasicBlock, (1, 1, 1, 1), (4, 8, 8, 8), 4, 10), seed=0)
    model = ResNet(stage_sizes=(2, 1, 1, 1), widths=(4, 8, 8, 8), stem_width=4, num_classes=10)
    with pytest.raises(ValueError, match="missing params/layer1_1/conv1/kernel"):
        load_torchvision_resnet(torch_model.state_dict(), model, input_shape=(1, 32, 32, 3))
    wrong_classes = ResNet(stage_sizes=(1, 1, 1, 1), widths=(4, 8, 8, 8), stem_width=4, num_classes=7)
    with pytest.raises(ValueError, match=r"params/fc/kernel: file has \(8, 10\), the model needs \(8, 7\)"):
        load_torchvision_resnet(torch_model.state_dict(), wrong_classes, input_shape=(1, 32, 32, 3))
    with pytest.raises(ValueError, match="conv='standard'"):
        load_torchvision_resnet({}, get_model("resnet18", conv="separable"))
    with pytest.raises(ValueError, match="conv='standard'"):  # same shapes as the standard conv, other function
        load_torchvision_resnet({}, get_model("resnet18", conv="dilated:2"))
    with pytest.raises(ValueError, match="not a torchvision ResNet parameter"):
        torchvision_resnet_to_flax({"classifier.weight": np.zeros((2, 2))})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_state_dict("/nonexistent/resnet.pth")


def test_missing_torch_gives_install_hint(monkeypatch, tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="needs the 'torch' package"):
        read_state_dict(str(path))
