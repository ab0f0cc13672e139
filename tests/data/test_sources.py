import ml_collections
import numpy as np
import pytest

from cnnjax.data.sources import get_dataset


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


def test_validation_split_is_disjoint_and_complete(fashion_mnist_dir):
    ds = get_dataset(_config(validation_size=5000, split_seed=3))
    assert len(ds.train) == 55000 and len(ds.validation) == 5000


def test_missing_data_folder_says_how_to_provide(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist.*data_dir"):
        get_dataset(_config(data_dir=str(tmp_path / "absent")))


def test_missing_file_in_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        get_dataset(_config(data_dir=str(tmp_path)))


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match=r"dataset.name='cifar' is unknown; available: .*fashion_mnist"):
        get_dataset(_config(name="cifar"))
