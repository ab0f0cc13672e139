"""Model summary: per-layer shapes, parameters, FLOPs and receptive fields; the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cnnjax.models import get_model
from cnnjax.models.summary import summarize
from cnnjax.ops import arithmetic
from tests.conftest import REPO_ROOT


def by_name(summary):
    return {row.name: row for row in summary.layers}


def test_lenet5_summary_rows():
    s = summarize(get_model("lenet5"), (28, 28, 1))
    rows = by_name(s)
    assert list(rows) == ["conv1", "pool1", "conv2", "pool2", "fc1", "fc2", "logits"]
    assert [rows[n].output_shape[1:] for n in ("conv1", "pool1", "conv2", "pool2")] == [
        (28, 28, 6),
        (14, 14, 6),
        (10, 10, 16),
        (5, 5, 16),
    ]
    assert s.total_params == sum(r.params for r in s.layers) == 61_706
    assert rows["conv2"].params == arithmetic.conv_params(6, 16, 5) == 2_416
    assert rows["conv1"].flops == arithmetic.conv_flops(1, 6, 5, (28, 28)) == 28 * 28 * 6 * (2 * 25 + 1)
    assert rows["fc1"].flops == arithmetic.dense_flops(400, 120)
    assert rows["pool1"].flops == 14 * 14 * 6 * 4
    # conv 5 -> pool 2/2 -> conv 5 (jump 2) -> pool 2/2: 5, 6, 14, 16 (seeds 001/004).
    assert [rows[n].receptive_field for n in ("conv1", "pool1", "conv2", "pool2", "fc1")] == [5, 6, 14, 16, None]
    assert s.total_flops == sum(r.flops for r in s.layers)
    assert "total params: 61,706" in s.table()


def test_dilated_receptive_fields_grow_with_dilation():
    rows = by_name(summarize(get_model("dilated_cnn"), (28, 28, 1)))
    # 3x3 dilated 2 spans 5; 3x3/2 pool: +2; dilated conv at jump 2: +8; pool at jump 2: +4.
    assert [rows[n].receptive_field for n in ("conv1", "pool1", "conv2", "pool2")] == [5, 7, 15, 19]


def test_resnet18_receptive_field_and_totals():
    s = summarize(get_model("resnet18", num_classes=1000), (224, 224, 3))
    rows = by_name(s)
    assert s.total_params == 11_689_512
    assert s.total_batch_stats == 2 * 4_800  # mean and var for every BN channel
    assert rows["layer4_1/conv2"].receptive_field == 435  # the well-known ResNet-18 figure
    assert rows["layer2_0/downsample_conv"].receptive_field == rows["layer1_1/conv2"].receptive_field == 43
    # 1.82 G multiply-adds (as usually quoted) = 3.6 GFLOPs.
    assert 3.5e9 < s.total_flops < 3.7e9


def test_inception_branches_do_not_see_each_other():
    rows = by_name(summarize(get_model("inception"), (28, 28, 1)))
    stem_pool = rows["stem_pool"].receptive_field
    assert stem_pool == 5
    # Branches of the first module start from the same input: 3x3 pool at jump 2 adds 4, 5x5 adds 8.
    assert rows["inception0/branch_pool"].receptive_field == 9
    assert rows["inception0/branch5x5"].receptive_field == 17
    assert rows["inception0/branch3x3"].receptive_field == 9
    # The next module's input is the concatenation: the widest branch.
    assert rows["inception1/branch1x1"].receptive_field == 17


def test_lenet5_classic_summary():
    rows = by_name(summarize(get_model("lenet5_classic"), (28, 28, 1)))
    assert rows["C3"].params == 1_516 and rows["C3"].flops == 10 * 10 * (2 * 25 * 60) + 16 * 100
    assert rows["C5"].receptive_field == 32  # C5 sees the whole 32x32 field
    assert rows["C5"].output_shape[1:] == (1, 1, 120)


@pytest.mark.parametrize(
    "variant", ["depthwise", "separable", "grouped:2", "dilated:2", "deformable", "deformable_v2", "locally_connected"]
)
def test_summary_of_every_conv_variant(variant):
    model = get_model("lenet5", conv=variant)
    s = summarize(model, (28, 28, 1))
    rows = by_name(s)
    assert s.total_params == sum(r.params for r in s.layers)
    conv2 = [r for name, r in rows.items() if name.startswith("conv2")]
    assert conv2 and sum(r.params for r in conv2) > 0 and sum(r.flops for r in conv2) > 0
    if variant == "grouped:2":
        assert rows["conv2"].flops == arithmetic.conv_flops(6, 16, 5, (10, 10), groups=2)
    if variant == "dilated:2":  # a 5x5 kernel dilated 2 spans 9: 6 + 8 * 2
        assert rows["conv2"].receptive_field == 22 and rows["conv2"].output_shape[1:] == (6, 6, 16)
    if variant == "depthwise":  # 16 one-channel 5x5 filters on a 10x10 output
        assert rows["conv2"].flops == 2 * 100 * 16 * 25 + 100 * 16 and rows["conv2"].params == 16 * 26
    if variant == "separable":
        assert rows["conv2"].flops == 2 * 100 * (25 * 6 + 6 * 16) + 100 * 16
    if variant == "locally_connected":
        assert rows["conv2"].params == 100 * (25 * 6 * 16 + 16)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        summarize(get_model("lenet5"), (28, 28))


def run_cli(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "experiments.summary", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )


def test_cli_prints_the_table():
    result = run_cli("--config=lenet")
    assert result.returncode == 0, result.stderr
    assert "total params: 61,706" in result.stdout and "conv2" in result.stdout
    bad = run_cli("--config=lenet", "--input_shape=28,28")
    assert bad.returncode != 0 and "must be three positive ints" in bad.stderr
