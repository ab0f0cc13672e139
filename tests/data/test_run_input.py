"""RunInput: the one input entry point of a training run (steps, training and evaluation batches)."""

import numpy as np

from cnnjax.data.run_input import RunInput
from cnnjax.data.sources import synthetic_dataset
from configs._base import base_config


def test_run_input_from_config_gives_steps_train_and_eval_batches():
    config = base_config()
    config.batch_size, config.eval_batch_size = 64, 100
    run_input = RunInput.from_config(config, synthetic_dataset(num_train=200, num_test=250))
    assert run_input.steps_per_epoch == 3  # 200 // 64, the partial batch dropped
    first = list(run_input.train_batches(seed=0, epoch=0))
    resumed = list(run_input.train_batches(seed=0, epoch=0, start_batch=1))
    assert len(first) == 3 and all(len(b["label"]) == 64 for b in first)
    np.testing.assert_array_equal(resumed[0]["image"], first[1]["image"])
    test = run_input.dataset.test
    batches = list(run_input.eval_batches(test))
    assert len(batches) == 3 and all(len(b["label"]) == 100 for b in batches)  # 250 -> 100, 100, 50 + padding
    masks = np.concatenate([b["mask"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])[masks > 0]
    np.testing.assert_array_equal(labels, test.get_batch(np.arange(250))["label"])  # each example once, in order
