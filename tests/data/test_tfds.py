"""TFDS sources through ``tfds.data_source``: a tiny builder prepared in ArrayRecord without TensorFlow."""

import ml_collections
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
from PIL import Image  # noqa: E402

from cnnjax.data.pipeline import eval_batches, train_batches  # noqa: E402
from cnnjax.data.sources import get_dataset  # noqa: E402


def _image(i, n):
    return np.full((6, 5), (i * 37 + n) % 256, np.uint8)


class CnnjaxTinyShapes(tfds.core.GeneratorBasedBuilder):
    """A 3-class data set of constant 6x5 grayscale images (pixel value encodes the index)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(6, 5, 1)),
                "label": tfds.features.ClassLabel(names=["circle", "square", "star"]),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(12), "test": self._generate_examples(5)}

    def _generate_examples(self, n):
        for i in range(n):  # PIL images are encoded with Pillow, so no TensorFlow is needed
            yield i, {"image": Image.fromarray(_image(i, n)), "label": i % 3}


# tfds looks up the source file of a builder defined in a package through the `importlib_resources`
# back-port, which the lock file does not pin; a one-part module name skips that look-up.
CnnjaxTinyShapes.__module__ = "cnnjax_tiny_shapes"


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    CnnjaxTinyShapes(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return str(data_dir)


def _config(**kw):
    c = ml_collections.ConfigDict({"name": "tfds:cnnjax_tiny_shapes", "data_dir": "", "validation_size": 0,
                                   "split_seed": 0})
    c.update(kw)
    return c


def test_reads_a_prepared_data_set(tfds_dir):
    ds = get_dataset(_config(data_dir=tfds_dir))
    assert ds.class_names == ("circle", "square", "star") and ds.num_classes == 3
    assert len(ds.train) == 12 and len(ds.test) == 5 and ds.validation is None
    assert ds.image_shape == (6, 5, 1)
    pixels = sorted(int(ds.train[i][0][0, 0, 0]) for i in range(12))
    assert pixels == sorted(int(_image(i, 12)[0, 0]) for i in range(12))
    batch = next(train_batches(ds.train, 4, seed=0, epoch=0))
    assert batch["image"].shape == (4, 6, 5, 1) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int32
    for b in range(4):  # labels stay with their images: label = index % 3, pixel encodes the index
        index = [i for i in range(12) if _image(i, 12)[0, 0] == batch["image"][b, 0, 0, 0]][0]
        assert batch["label"][b] == index % 3
    seen = sum(int(b["mask"].sum()) for b in eval_batches(ds.test, 4))
    assert seen == 5


def _indices(source):
    """The example index of every image of a split of the 12 training images (the pixel value encodes it)."""
    by_pixel = {int(_image(i, 12)[0, 0]): i for i in range(12)}
    assert len(by_pixel) == 12
    images, labels = source.images, source.labels
    indices = [by_pixel[int(p)] for p in images[:, 0, 0, 0]]
    assert [i % 3 for i in indices] == labels.tolist()  # each image kept its label
    return indices


def test_validation_size_and_cache(tfds_dir):
    """validation_size holds out examples of the train split: disjoint from train, together all of it."""
    ds = get_dataset(_config(data_dir=tfds_dir, validation_size=3, cache=True))
    assert len(ds.train) == 9 and len(ds.validation) == 3
    assert ds.train.images.shape == (9, 6, 5, 1)
    train, validation = _indices(ds.train), _indices(ds.validation)
    assert not set(train) & set(validation)
    assert sorted(train + validation) == list(range(12))


def test_missing_data_set_says_how_to_prepare(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not prepared in .*tfds build mnist --file_format=array_record.*data_dir"):
        get_dataset(_config(name="tfds:mnist", data_dir=str(tmp_path)))


def test_unknown_tfds_name(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no_such_set_xyz.*could not be found.*prepare"):
        get_dataset(_config(name="tfds:no_such_set_xyz", data_dir=str(tmp_path)))
