"""Smoke tests of the benchmark plumbing (no timing assertions)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from benchmarks import run
from benchmarks.harness import interleaved, machine_info, write_json
from benchmarks.torch_models import LeNet5, ResNet20, count_params


def test_interleaved_calls_everyone_and_reports_medians():
    calls = {"a": 0, "b": 0}

    def make(name):
        def fn():
            calls[name] += 1
            return name
        return fn

    res = interleaved({"a": make("a"), "b": make("b")}, repeats=3, number=2, warmup=1)
    assert calls == {"a": 7, "b": 7}
    for r in res.values():
        assert len(r["repeats_s"]) == 3 and r["median_s"] >= r["min_s"] >= 0 and "cpu_median_s" in r


def test_write_json_and_machine_info(tmp_path):
    path = write_json("x", {"machine": machine_info(), "rows": [{"v": 1.5}]}, results_dir=str(tmp_path))
    data = json.load(open(path))
    assert data["rows"][0]["v"] == 1.5 and data["machine"]["cpu_count"] >= 1


def test_torch_models_match_cnnjax_parameter_counts():
    assert count_params(LeNet5()) == 61_706
    assert count_params(ResNet20()) == 269_722


CONV_CASES = {case[0]: case for case in run._conv_cases(quick=True)}


@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_conv_case_layouts_agree_with_torch(name):
    """The weight-layout converters make both sides compute the same conv (the benchmark's own guard), for
    every case of the quick run."""
    _, x_shape, pshapes, jfn, tfn = CONV_CASES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, *x_shape[1:])).astype(np.float32)
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in pshapes.items()}
    want = tfn(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))),
               *[run._to_torch_param(k, v, name, torch, "cpu") for k, v in params.items()])
    got = np.asarray(jax.jit(jfn)(x, *params.values()))
    np.testing.assert_allclose(got, np.moveaxis(want.numpy(), 1, -1), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("conv", run.RESNET_VARIANTS)
def test_torch_resnet20_variants_match_cnnjax_parameter_counts(conv):
    """The torch ResNet-20 with a conv variant has as many parameters as cnnjax's (the same layers)."""
    from cnnjax.models import get_model

    model = get_model("resnet20", num_classes=10, conv=conv)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
    assert count_params(ResNet20(conv=conv)) == sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes["params"]))
