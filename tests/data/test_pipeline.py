import numpy as np
import pytest

from cnnjax.data.pipeline import eval_batches, steps_per_epoch, train_batches
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


def test_eval_batches_hand_out_the_stored_pixels():
    """Evaluation batches are the stored uint8 images, in order (augmentation is the train step's alone:
    tests/training/test_optim_features.py::test_evaluation_never_augments checks it through a whole run)."""
    images = np.random.default_rng(0).integers(0, 256, (23, 5, 5, 1), dtype=np.uint8)
    src = ArraySource(images, np.arange(23, dtype=np.int32))
    batches = list(eval_batches(src, 10))
    assert all(b["image"].dtype == np.uint8 for b in batches)
    np.testing.assert_array_equal(np.concatenate([b["image"][b["mask"] > 0] for b in batches]), images)


@pytest.mark.parametrize("n, batch, count", [(103, 10, 1), (100, 6, 2), (61, 4, 3)])
def test_steps_per_epoch_is_the_number_of_batches_each_process_gets(n, batch, count):
    expected = (n // count) // batch  # the last partial batch dropped
    assert steps_per_epoch(n, batch, count) == expected
    for p in range(count):
        got = list(train_batches(_source(n), batch, seed=0, epoch=0, process_index=p, process_count=count))
        assert len(got) == expected


def test_batch_size_larger_than_data():
    with pytest.raises(ValueError, match="batch_size=200 is larger than the 103 examples"):
        next(train_batches(_source(), 200, seed=0, epoch=0))


def _labels(batches):
    return [b["label"] for b in batches]


def test_two_pipelines_with_the_same_seed_are_identical_across_epochs():
    src = _source(57)
    for epoch in range(3):
        a = list(train_batches(src, 8, seed=11, epoch=epoch))
        b = list(train_batches(src, 8, seed=11, epoch=epoch))
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x["image"], y["image"])
            np.testing.assert_array_equal(x["label"], y["label"])
    other = np.concatenate(_labels(train_batches(src, 8, seed=12, epoch=0)))
    assert not np.array_equal(np.concatenate(_labels(train_batches(src, 8, seed=11, epoch=0))), other)


def test_resume_from_saved_state_mid_epoch_sees_the_uninterrupted_stream():
    """A run interrupted after batch 4 of epoch 1 and restored from (epoch=1, batch=4) continues exactly."""
    src, bs, seed = _source(50), 6, 5
    uninterrupted = [lab for e in range(3) for lab in _labels(train_batches(src, bs, seed=seed, epoch=e))]
    resumed = _labels(train_batches(src, bs, seed=seed, epoch=0))
    resumed += _labels(train_batches(src, bs, seed=seed, epoch=1))[:4]
    state = {"epoch": 1, "batch": 4}  # what the checkpoint stores
    resumed += _labels(train_batches(src, bs, seed=seed, epoch=state["epoch"], start_batch=state["batch"]))
    resumed += _labels(train_batches(src, bs, seed=seed, epoch=2))
    assert len(resumed) == len(uninterrupted) == 3 * (50 // 6)
    for x, y in zip(uninterrupted, resumed, strict=True):
        np.testing.assert_array_equal(x, y)


def test_resume_with_threads_matches_plain():
    src = _source(40)
    plain = _labels(train_batches(src, 4, seed=3, epoch=2, start_batch=3))
    threaded = _labels(train_batches(src, 4, seed=3, epoch=2, start_batch=3, num_threads=2))
    assert len(plain) == len(threaded) == 7
    for x, y in zip(plain, threaded, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("count", [2, 3])
def test_sharded_processes_partition_every_epoch(count):
    src = _source(61)
    for epoch in range(2):
        shards = [np.concatenate(_labels(train_batches(src, 4, seed=9, epoch=epoch, process_index=p,
                                                       process_count=count))) for p in range(count)]
        union = np.concatenate(shards)
        assert len(set(union.tolist())) == len(union)  # disjoint, no repeats
        assert all(len(s) == (61 // count) // 4 * 4 for s in shards)  # same number of steps everywhere


def test_sharded_eval_covers_every_example_once():
    src = _source(23)
    seen = []
    for p in range(2):
        for b in eval_batches(src, 5, process_index=p, process_count=2):
            seen += b["label"][b["mask"] > 0].tolist()
    assert sorted(seen) == list(range(23))


def test_eval_batches_with_threads_in_order():
    src = _source(23)
    seen = [lab for b in eval_batches(src, 4, num_threads=3) for lab in b["label"][b["mask"] > 0].tolist()]
    assert seen == list(range(23))


@pytest.mark.parametrize("kwargs,match", [
    (dict(start_batch=11), r"start_batch=11 must lie in \[0, 10\]"),
    (dict(start_batch=-1), "start_batch=-1"),
    (dict(num_threads=-2), "num_threads=-2"),
    (dict(process_index=2, process_count=2), "process_index=2"),
])
def test_bad_pipeline_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        next(train_batches(_source(), 10, seed=0, epoch=0, **kwargs))


@pytest.mark.slow
def test_worker_processes_give_the_same_batches():
    src = _source(60)
    plain = _labels(train_batches(src, 6, seed=1, epoch=0, start_batch=2))
    workers = _labels(train_batches(src, 6, seed=1, epoch=0, start_batch=2, num_workers=2))
    assert len(plain) == len(workers) == 8
    for x, y in zip(plain, workers, strict=True):
        np.testing.assert_array_equal(x, y)


def test_processes_see_the_single_process_global_batches():
    src = _source(100)
    single = _labels(train_batches(src, 12, seed=7, epoch=1))
    parts = [_labels(train_batches(src, 6, seed=7, epoch=1, process_index=p, process_count=2)) for p in range(2)]
    assert len(single) == len(parts[0]) == len(parts[1]) == 8
    for b in range(8):
        np.testing.assert_array_equal(np.concatenate([parts[0][b], parts[1][b]]), single[b])
