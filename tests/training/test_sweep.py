import json

import pytest

from cnnjax.training.sweep import apply_overrides, run_sweep
from configs._base import base_config


def _sweep_config():
    c = base_config()
    c.dataset.name = "synthetic"
    c.num_epochs, c.batch_size, c.eval_batch_size = 1, 64, 64
    c.progress_bar = c.tensorboard = False
    c.model.kwargs.conv = "standard"
    c.sweep = [{"name": "standard", "overrides": {"model.kwargs.conv": "standard"}},
               {"name": "dilated2", "overrides": {"model.kwargs.conv": "dilated:2"}}]
    return c


def test_sweep_runs_every_point_and_writes_the_table(tmp_path):
    rows = run_sweep(_sweep_config(), str(tmp_path))
    assert [r["name"] for r in rows] == ["standard", "dilated2"]
    for r in rows:
        summary = json.loads((tmp_path / r["name"] / "summary.json").read_text())
        assert r["test_accuracy"] == summary["test_accuracy"]
        config = json.loads((tmp_path / r["name"] / "config.json").read_text())
        assert config["model"]["kwargs"]["conv"] == r["overrides"]["model.kwargs.conv"]
    assert json.loads((tmp_path / "results.json").read_text())[1]["name"] == "dilated2"
    assert "| dilated2 |" in (tmp_path / "results.md").read_text()


def test_override_of_missing_field():
    with pytest.raises(ValueError, match=r"sweep override 'model.kwargs.convv': 'convv' is not a config field"):
        apply_overrides(_sweep_config(), {"model.kwargs.convv": "x"})


def test_duplicate_point_names(tmp_path):
    c = _sweep_config()
    c.sweep = [c.sweep[0], c.sweep[0]]
    with pytest.raises(ValueError, match="must be unique"):
        run_sweep(c, str(tmp_path))
