import numpy as np
import pytest

from cnnjax.data.pipeline import eval_batches, train_batches
from cnnjax.data.sources import ArraySource


def _source(n=103):
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    return ArraySource(images, np.arange(n, dtype=np.int32))


def test_train_batches_are_deterministic_and_reshuffled_each_epoch():
    src = _source()
    a = [b["label"] for b in train_batches(src, 10, seed=1, epoch=0)]
    b = [b["label"] for b in train_batches(src, 10, seed=1, epoch=0)]
    c = [b["label"] for b in train_batches(src, 10, seed=1, epoch=1)]
    assert len(a) == 10  # 103 // 10, last partial batch dropped
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    assert not np.array_equal(np.concatenate(a), np.concatenate(c))
    assert len(set(np.concatenate(a).tolist())) == 100  # no repeats within an epoch


def test_start_batch_continues_exactly():
    src = _source()
    full = [b["label"] for b in train_batches(src, 8, seed=4, epoch=2)]
    rest = [b["label"] for b in train_batches(src, 8, seed=4, epoch=2, start_batch=5)]
    for x, y in zip(full[5:], rest, strict=True):
        np.testing.assert_array_equal(x, y)


def test_processes_partition_the_data():
    src = _source(100)
    shards = [np.concatenate([b["label"] for b in train_batches(src, 5, seed=0, epoch=0, process_index=p,
                                                                 process_count=2)]) for p in range(2)]
    assert not set(shards[0]) & set(shards[1])
    assert len(shards[0]) + len(shards[1]) == 100


def test_eval_covers_every_example_once():
    src = _source(103)
    seen = []
    for batch in eval_batches(src, 10):
        assert batch["image"].shape[0] == 10
        seen.extend(batch["label"][batch["mask"] > 0].tolist())
    assert seen == list(range(103))


def test_batch_size_larger_than_data():
    with pytest.raises(ValueError, match="batch_size=200 is larger than the 103 examples"):
        next(train_batches(_source(), 200, seed=0, epoch=0))
