"""``init_from`` with an EMA: the average starts at the loaded weights, in buffers of its own (the step donates)."""

import jax
import numpy as np

from cnnjax.data.run_input import RunInput
from cnnjax.data.sources import get_dataset
from cnnjax.training import mesh as mesh_lib
from cnnjax.training.checkpoint import read_newest_verified
from cnnjax.training.train import describe_run, train_and_evaluate
from tests.conftest import synthetic_config


def test_init_from_with_ema_starts_at_the_loaded_params_in_separate_buffers_and_trains(synthetic_run, tmp_path):
    _, source, _ = synthetic_run
    config = synthetic_config(**{"model.kwargs": {"dropout": 0.1}, "ema_decay": 0.9, "init_from": str(source)})
    run_input = RunInput.from_config(config, get_dataset(config.dataset))
    _, state = describe_run(config, str(tmp_path / "w"), run_input, mesh_lib.make_mesh())
    loaded = jax.tree_util.tree_leaves(read_newest_verified(str(source))["params"])
    params, ema = jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(state.ema_params)
    assert len(params) == len(ema) == len(loaded)
    for p, e, source_leaf in zip(params, ema, loaded):
        np.testing.assert_array_equal(p, source_leaf)
        np.testing.assert_array_equal(e, p)
        assert e.unsafe_buffer_pointer() != p.unsafe_buffer_pointer()

    summary = train_and_evaluate(config, str(tmp_path / "w"))  # the donated step accepts the state
    assert summary["steps"] == 8 and np.isfinite(summary["test_loss"])
