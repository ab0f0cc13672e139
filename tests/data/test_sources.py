import ml_collections
import numpy as np
import pytest

from cnnjax.data.sources import ArraySource, Subset, get_dataset, split_validation


def _config(**kw):
    c = ml_collections.ConfigDict({"name": "fashion_mnist", "data_dir": "", "validation_size": 0, "split_seed": 0,
                                   "train_limit": 0, "test_limit": 0})
    c.update(kw)
    return c


def test_fashion_mnist_full_splits(fashion_mnist_dir):
    ds = get_dataset(_config())
    assert ds.train.images.shape == (60000, 28, 28, 1) and ds.train.images.dtype == np.uint8
    assert ds.test.images.shape == (10000, 28, 28, 1)
    assert ds.num_classes == 10 and ds.class_names[9] == "Ankle boot"


def _examples(source):
    """The multiset of (image, label) pairs of a source: their sorted hashes."""
    batch = source.get_batch(np.arange(len(source)))
    return np.sort([hash((image.tobytes(), label)) for image, label in zip(batch["image"], batch["label"].tolist())])


@pytest.mark.parametrize("wrap", [False, True], ids=["array", "subset"])
def test_split_validation_partitions_the_indices(wrap):
    """label = index: the held-out and kept labels are disjoint, cover every index, and depend on the seed only."""
    n = 50
    src = ArraySource(np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), np.arange(n, dtype=np.int32))
    if wrap:  # a lazy source (no ArraySource) is split into two Subsets
        src = Subset(src, np.arange(n))
    train, validation = split_validation(src, 12, seed=5)
    assert isinstance(train, Subset) == wrap
    kept, held = (np.asarray([s[i][1] for i in range(len(s))]) for s in (train, validation))
    assert len(held) == 12 and len(kept) == 38
    assert not set(kept.tolist()) & set(held.tolist())
    assert sorted(kept.tolist() + held.tolist()) == list(range(n))
    assert all(int(s[i][0][0, 0, 0]) == s[i][1] for s in (train, validation) for i in range(len(s)))
    again = split_validation(src, 12, seed=5)[1]
    other = split_validation(src, 12, seed=6)[1]
    assert [again[i][1] for i in range(12)] == held.tolist()
    assert [other[i][1] for i in range(12)] != held.tolist()


def test_validation_split_is_disjoint_and_complete(fashion_mnist_dir):
    """train + validation is exactly the official training set: the same (image, label) pairs, none twice."""
    ds = get_dataset(_config(validation_size=5000, split_seed=3))
    assert len(ds.train) == 55000 and len(ds.validation) == 5000
    full = get_dataset(_config()).train
    np.testing.assert_array_equal(np.sort(np.concatenate([_examples(ds.train), _examples(ds.validation)])),
                                  _examples(full))


def test_missing_data_folder_says_how_to_provide(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist.*data_dir"):
        get_dataset(_config(data_dir=str(tmp_path / "absent")))


def test_missing_file_in_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        get_dataset(_config(data_dir=str(tmp_path)))


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match=r"dataset.name='cifar' is unknown; available: .*fashion_mnist"):
        get_dataset(_config(name="cifar"))


def test_digits_dataset():
    ds = get_dataset(_config(name="digits"))
    assert len(ds.train) == 1437 and len(ds.test) == 360 and ds.num_classes == 10
    assert ds.train.images.shape[1:] == (8, 8, 1) and ds.train.images.dtype == np.uint8
    assert ds.image_shape == (8, 8, 1) and ds.train.image_shape == (8, 8, 1)
    assert ds.train.images.max() == 255 and ds.train.images.min() == 0
    again = get_dataset(_config(name="digits"))
    np.testing.assert_array_equal(ds.test.labels, again.test.labels)
    from sklearn.datasets import load_digits

    raw = load_digits()
    all_images = np.concatenate([ds.train.images, ds.test.images])[..., 0]
    assert sorted(map(bytes, all_images)) == sorted(map(bytes, np.rint(raw.images * 255 / 16).astype(np.uint8)))


def test_digits_validation_split_is_disjoint():
    ds = get_dataset(_config(name="digits", validation_size=200, split_seed=1))
    assert len(ds.train) == 1237 and len(ds.validation) == 200
    full = get_dataset(_config(name="digits")).train
    np.testing.assert_array_equal(np.sort(np.concatenate([_examples(ds.train), _examples(ds.validation)])),
                                  _examples(full))


@pytest.mark.parametrize("cache", [False, True])
def test_limits_keep_the_first_examples(cache):
    """train_limit / test_limit keep the first n examples of each split (after the validation split)."""
    full = get_dataset(_config(name="digits", validation_size=100))
    ds = get_dataset(_config(name="digits", validation_size=100, train_limit=50, test_limit=7, cache=cache))
    assert (len(ds.train), len(ds.test), len(ds.validation)) == (50, 7, 100)
    for limited, whole in ((ds.train, full.train), (ds.test, full.test)):
        got, want = limited.get_batch(np.arange(len(limited))), whole.get_batch(np.arange(len(limited)))
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])


def test_subset_and_take():
    from cnnjax.data.sources import take

    src = ArraySource(np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1), np.arange(10, dtype=np.int32))
    sub = Subset(src, [7, 2, 5])
    assert len(sub) == 3 and sub[1][1] == 2 and sub.image_shape == (1, 1, 1)
    np.testing.assert_array_equal(sub.get_batch([2, 0])["label"], [5, 7])
    assert len(take(sub, 2)) == 2 and take(sub, 2)[1][1] == 2
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\)"):
        Subset(src, [10])


def test_synthetic_and_empty_prefixes():
    assert get_dataset(_config(name="synthetic")).image_shape == (28, 28, 1)
    with pytest.raises(ValueError, match="needs a path"):
        get_dataset(_config(name="folder:"))
    with pytest.raises(ValueError, match="needs a TFDS name"):
        get_dataset(_config(name="tfds:"))
