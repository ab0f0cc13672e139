"""Bad sweeps fail before anything trains or is written, naming the trial and the field."""

import os
import sys

import pytest

from cnnjax.training.sweeps import run_sweep
from cnnjax.training.sweeps.executors import split_cores
from configs import _hyper as hyper
from tests.training.sweep_config_tiny import get_config


def _sweep(*trials):
    c = get_config()
    c.sweep = list(trials)
    return c


def _refused(config, tmp_path, error, match, **kwargs):
    workdir = tmp_path / "sweep"
    with pytest.raises(error, match=match):
        run_sweep(config, str(workdir), **kwargs)
    assert not workdir.exists()  # nothing trained, nothing written


def test_unknown_field_names_the_trial_and_the_closest_fields(tmp_path):
    c = _sweep({"model.kwargs.conv": "standard"}, {"optimizer.learnig_rate": 0.1, "seed": 4})
    _refused(c, tmp_path, ValueError, r"trial 1 \(optimizer.learnig_rate=0.1, seed=4\): 'optimizer.learnig_rate' is "
             r"not a config field \('optimizer.learnig_rate' is unknown\); closest: optimizer.learning_rate")


def test_wrong_type_names_the_trial_and_the_field(tmp_path):
    c = _sweep({"num_epochs": "3"})
    _refused(c, tmp_path, TypeError, r"trial 0 \(num_epochs='3'\): override num_epochs='3' is a str, but the "
             r"config's num_epochs is a int \(1\)")


def test_out_of_range_value_names_the_trial(tmp_path):
    c = _sweep({"model.kwargs.conv": "standard"}, {"optimizer.momentum": 1.5})
    _refused(c, tmp_path, ValueError, r"trial 1 \(optimizer.momentum=1.5, seed=0\): optimizer.momentum=1.5 must be")


def test_unknown_conv_variant_names_the_trial(tmp_path):
    c = _sweep({"model.kwargs.conv": "grouped:2"}, {"model.kwargs.conv": "shifted"})
    _refused(c, tmp_path, ValueError, r"trial 1 \(model.kwargs.conv='shifted', seed=0\): .*'shifted'")


def test_duplicate_trial(tmp_path):
    c = _sweep(*hyper.product(hyper.sweep("model.kwargs.conv", ["standard", "dilated:2", "standard"]), hyper.seeds(1)))
    _refused(c, tmp_path, ValueError, r"trial 2 \(model.kwargs.conv='standard', seed=0\) duplicates trial 0")


def test_unsafe_folder_name(tmp_path):
    c = _sweep({"init_from": ""}, {"dataset.name": "folder:/data/x y"})
    _refused(c, tmp_path, ValueError, r"trial 1 .*the folder name 'name=folder-/data/x y,seed=0' \(from dataset.name\)"
             r" is unsafe")
    c = _sweep({"name": "../escape", "overrides": {"seed": 1}})
    _refused(c, tmp_path, ValueError, r"trial 0 \(seed=1\): the folder name '../escape' is unsafe")


def test_old_list_form_still_works_and_names_folders():
    from cnnjax.training.sweeps import plan

    c = _sweep({"name": "std", "overrides": {"model.kwargs.conv": "standard"}},
               {"name": "dil", "overrides": {"model.kwargs.conv": "dilated:2", "seed": 1}})
    assert [(t.name, t.overrides) for t in plan(c)] == [
        ("std", {"model.kwargs.conv": "standard", "seed": 0}), ("dil", {"model.kwargs.conv": "dilated:2", "seed": 1})]


def test_executor_not_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    _refused(get_config(), tmp_path, ValueError, r"executor='submitit' needs the submitit package, which is not "
             r"installed; install it with: pip install -e \"\.\[cluster\]\"", executor="submitit")


def test_unknown_executor_and_bad_workers(tmp_path):
    _refused(get_config(), tmp_path, ValueError, r"executor='ray' is unknown; allowed: local, submitit", executor="ray")
    _refused(get_config(), tmp_path, ValueError, r"workers=0 must be an int >= 1", workers=0)
    _refused(get_config(), tmp_path, ValueError, r"workers=\d+ is more than the \d+ cores", workers=len(os.sched_getaffinity(0)) + 1)


def test_trial_folder_of_another_config_is_refused_before_training(tmp_path):
    import json

    workdir = tmp_path / "sweep"
    (workdir / "conv=standard,seed=1").mkdir(parents=True)
    other = get_config().to_dict()
    del other["sweep"]
    other["num_epochs"] = 7
    (workdir / "conv=standard,seed=1" / "config.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match=r"trial 1 \(conv=standard,seed=1\): workdir .* holds a run of another "
                                         r"config .*num_epochs: 7 in the workdir's run, 1 now"):
        run_sweep(get_config(), str(workdir))
    assert sorted(os.listdir(workdir)) == ["conv=standard,seed=1"]


def test_only_that_matches_nothing(tmp_path):
    _refused(get_config(), tmp_path, ValueError, r"--only='conv=nope\*' matches none of the 4 trials",
             only="conv=nope*")


def test_hyper_helpers():
    assert hyper.product(hyper.sweep("a", [1, 2]), hyper.seeds(2)) == [
        {"a": 1, "seed": 0}, {"a": 1, "seed": 1}, {"a": 2, "seed": 0}, {"a": 2, "seed": 1}]
    assert hyper.zip(hyper.sweep("a", [1, 2]), hyper.sweep("b.c", [3, 4])) == [{"a": 1, "b.c": 3}, {"a": 2, "b.c": 4}]
    assert hyper.chain(hyper.fixed(x=1), hyper.sweep("y", [2])) == [{"x": 1}, {"y": 2}]
    with pytest.raises(ValueError, match="equal length"):
        hyper.zip(hyper.sweep("a", [1, 2]), hyper.sweep("b", [3]))
    with pytest.raises(ValueError, match=r"both set \['a'\]"):
        hyper.product(hyper.sweep("a", [1]), hyper.sweep("a", [2]))
    with pytest.raises(ValueError, match=r"seeds\(n=0\) must be an int >= 1"):
        hyper.seeds(0)


def test_split_cores():
    assert split_cores([0, 1, 2, 3, 4], 2) == [[0, 1, 2], [3, 4]]
    assert split_cores([0, 1], 2) == [[0], [1]]


def test_mean_and_sample_std_over_seeds():
    from cnnjax.training.sweeps.collect import mean_std

    assert mean_std([0.5, 0.7, 0.9]) == pytest.approx((0.7, 0.2))  # ddof=1: sqrt((0.04 + 0 + 0.04) / 2)
    assert mean_std([0.5]) == (0.5, None)


def test_folder_names_are_stable_and_short():
    from cnnjax.training.sweeps import plan

    c = _sweep(*hyper.product(hyper.sweep("optimizer.name", ["sgd"]), hyper.sweep("model.name", ["lenet5"]),
                              hyper.sweep("optimizer.learning_rate", [0.1]), hyper.seeds(1)))
    assert [t.name for t in plan(c)] == ["optimizer.name=sgd,model.name=lenet5,learning_rate=0.1,seed=0"]


def test_collect_from_trial_folders_keeps_the_sweep_order_of_keys(tmp_path):
    """results.csv/results.md come from sweep_trial.json + summary.json alone; columns follow the sweep."""
    import json

    from cnnjax.training.sweeps import collect

    for i, (name, lr, seed, acc) in enumerate([("sgd", 0.1, 0, 0.80), ("sgd", 0.1, 1, 0.90), ("adam", 0.01, 0, 0.7)]):
        folder = tmp_path / f"t{i}"
        folder.mkdir()
        overrides = {"optimizer.name": name, "optimizer.learning_rate": lr, "seed": seed}
        (folder / "sweep_trial.json").write_text(json.dumps(
            {"name": f"t{i}", "index": i, "overrides": overrides, "point": {k: overrides[k] for k in list(overrides)[:2]},
             "seed": seed, "override_keys": list(overrides), "flops_per_example": 100}, sort_keys=True))
        (folder / "summary.json").write_text(json.dumps(
            {"test_accuracy": acc, "test_loss": 1 - acc, "num_params": 10, "train_images_per_s": 50.0,
             "train_time_s": 1.0, "wall_time_s": 2.0}))
    rows, missing = collect(str(tmp_path), ["t0", "t1", "t2", "t3"])
    assert missing == ["t3"] and len(rows) == 3
    csv_text = (tmp_path / "results.csv").read_text()
    assert csv_text.splitlines()[0].startswith("trial,optimizer.name,optimizer.learning_rate,seed,test_accuracy")
    md = (tmp_path / "results.md").read_text()
    assert "| name=sgd, learning_rate=0.1 | 2 | 0.8500 ± 0.0707 | 0.1500 ± 0.0707 | 10 | 100 | 50 | 2.0 |" in md
    assert "| name=adam, learning_rate=0.01 | 1 | 0.7000 (one seed) |" in md
    assert (tmp_path / "accuracy_vs_flops.png").exists()
