"""vmap over seeds: the same results as training the seeds one after another, each seed its own run."""

import json

import numpy as np
import pytest

from cnnjax.training.train import train_and_evaluate
from cnnjax.training.vmap_seeds import check_seed_group, stacked_train_batches
from tests.training.sweep_config_tiny import get_config


def _config(seed, **changes):
    c = get_config()
    with c.unlocked():
        del c["sweep"]
    c.seed = seed
    c.augment.hflip = True  # augmentation draws must be the seed's own too
    for k, v in changes.items():
        c[k] = v
    return c


VMAP_TRIALS = ["hflip=True,seed=0", "hflip=True,seed=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Seeds 0 and 1 trained one after another (train_and_evaluate) and together (a sweep with --vmap_seeds)."""
    from cnnjax.training.sweeps import run_sweep
    from configs import _hyper as hyper

    root = tmp_path_factory.mktemp("vmap")
    seeds = (0, 1)
    sequential = [train_and_evaluate(_config(s), str(root / f"seq{s}")) for s in seeds]
    config = get_config()
    config.sweep = hyper.product(hyper.sweep("augment.hflip", [True]), hyper.seeds(2))  # the trials == _config(s)
    result = run_sweep(config, str(root / "sweep"), vmap_seeds=True)
    vmapped = [json.loads((root / "sweep" / t / "summary.json").read_text()) for t in VMAP_TRIALS]
    return root, seeds, sequential, vmapped, config, result


def test_vmap_over_seeds_equals_sequential_runs(runs):
    root, seeds, sequential, vmapped, _, _ = runs
    assert sequential[0]["test_loss"] != sequential[1]["test_loss"]  # the seeds really differ
    for s, seq, vm in zip(seeds, sequential, vmapped):
        assert vm["vmap_seeds"] == 2 and vm["num_params"] == seq["num_params"] and vm["steps"] == seq["steps"]
        np.testing.assert_allclose(vm["test_loss"], seq["test_loss"], rtol=1e-4)
        assert abs(vm["test_accuracy"] - seq["test_accuracy"]) <= 1 / seq["test_count"] + 1e-9
        read = [[json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
                for folder in (root / f"seq{s}", root / "sweep" / VMAP_TRIALS[s])]
        assert [(r["split"], r["step"]) for r in read[0]] == [(r["split"], r["step"]) for r in read[1]]
        np.testing.assert_allclose([r["loss"] for r in read[1]], [r["loss"] for r in read[0]], rtol=1e-4)
        assert json.loads((root / "sweep" / VMAP_TRIALS[s] / "config.json").read_text())["seed"] == s


def test_vmap_trial_folder_counts_as_the_finished_run(runs):
    """train_and_evaluate on a vmap-trained folder with the same config changes nothing."""
    root, _, _, vmapped, _, _ = runs
    folder = root / "sweep" / VMAP_TRIALS[1]
    before = (folder / "summary.json").read_bytes()
    assert train_and_evaluate(_config(1), str(folder)) == vmapped[1]
    assert (folder / "summary.json").read_bytes() == before


def test_each_seed_gets_its_own_data_order():
    from cnnjax.data.sources import synthetic_dataset

    source = synthetic_dataset().train
    batch = next(stacked_train_batches(source, 16, [0, 1], epoch=0))
    assert batch["image"].shape == (2, 16, 28, 28, 1)
    assert not np.array_equal(batch["label"][0], batch["label"][1])


def test_a_group_must_differ_in_seed_only():
    with pytest.raises(ValueError, match=r"differs from seed 0's in more than the seed \(num_epochs: 1"):
        check_seed_group([_config(0), _config(1, num_epochs=2)])
    with pytest.raises(ValueError, match=r"seeds \[3, 3\] repeat"):
        check_seed_group([_config(3), _config(3)])


def test_sweep_with_vmap_seeds_writes_the_trials_and_their_table(runs):
    root, _, _, vmapped, config, result = runs
    from cnnjax.training.sweeps import run_sweep

    assert result["trained"] == VMAP_TRIALS and result["failures"] == []
    assert [r["vmap_seeds"] for r in result["rows"]] == [2, 2]
    assert [r["test_loss"] for r in result["rows"]] == [v["test_loss"] for v in vmapped]
    assert "| hflip=True | 2 | " in (root / "sweep" / "results.md").read_text()
    assert run_sweep(config, str(root / "sweep"), vmap_seeds=True)["trained"] == []
