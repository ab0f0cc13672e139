"""TFDS catalogue data sets read through ``tfds.data_source`` (ArrayRecord; reading needs no TensorFlow).

Preparing a TFDS data set (downloading and converting it) needs TensorFlow and the internet; reading a
prepared one needs neither. On a machine with both::

    pip install 'cnnjax[prepare]'            # tensorflow-cpu
    tfds build mnist --file_format=array_record
    # or: python -c "import tensorflow_datasets as tfds; tfds.builder('mnist').download_and_prepare(file_format='array_record')"

then copy ``~/tensorflow_datasets/mnist`` to ``~/tensorflow_datasets/mnist`` here (or into any folder
and pass ``--config.dataset.data_dir=FOLDER``).
"""

from __future__ import annotations

import os

import numpy as np


def _how_to_prepare(name: str, data_dir: str) -> str:
    return (
        f"Prepare it on a machine with internet access and the `prepare` extra "
        f"(pip install 'cnnjax[prepare]'): `tfds build {name} --file_format=array_record` "
        f"(or tfds.builder({name!r}).download_and_prepare(file_format='array_record')), then copy the folder "
        f"~/tensorflow_datasets/{name.split('/')[0].split(':')[0]} into {data_dir!r} on this machine, "
        f"or copy it anywhere and pass --config.dataset.data_dir=FOLDER."
    )


def default_tfds_dir() -> str:
    """Where tfds looks by default: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def tfds_builder(name: str, data_dir: str | None = None):
    """The builder of a *prepared* TFDS data set; a clear ``FileNotFoundError`` when it is not there."""
    import tensorflow_datasets as tfds

    data_dir = data_dir or default_tfds_dir()
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # unknown name, or metadata that cannot be read offline
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise FileNotFoundError(
            f"TFDS data set {name!r} could not be found in {data_dir!r} ({type(e).__name__}: {first_line}). "
            + _how_to_prepare(name, data_dir)
        ) from e
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"TFDS data set {name!r} is not prepared in {data_dir!r} (no {builder.data_dir}); this machine "
            "cannot download it. " + _how_to_prepare(name, data_dir)
        )
    file_format = str(getattr(builder.info, "file_format", "") or "")
    if "array_record" not in file_format.lower() and "parquet" not in file_format.lower():
        raise ValueError(
            f"TFDS data set {name!r} in {builder.data_dir} is stored as {file_format}, which has no random "
            "access; prepare it again with file_format='array_record'. " + _how_to_prepare(name, data_dir)
        )
    return builder


class TfdsSource:
    """One split of a prepared TFDS data set: ``len``, ``source[i] -> (uint8 (H, W, C), label)``.

    Args:
      builder: a prepared builder (see ``tfds_builder``).
      split: a TFDS split string ("train", "test", "train[:90%]", ...).
      image_key, label_key: the feature names (default: the builder's ``supervised_keys``).
    """

    def __init__(self, builder, split: str, image_key: str | None = None, label_key: str | None = None):
        keys = builder.info.supervised_keys or ("image", "label")
        self.image_key = image_key or keys[0]
        self.label_key = label_key or keys[1]
        features = builder.info.features
        for k in (self.image_key, self.label_key):
            if k not in features:
                raise ValueError(f"TFDS data set {builder.name!r} has no feature {k!r}; features: {list(features)}")
        shape = features[self.image_key].shape
        if len(shape) != 3 or None in shape:
            raise ValueError(
                f"TFDS data set {builder.name!r}: images have shape {shape}; cnnjax needs a fixed (H, W, C)"
            )
        self._image_shape = tuple(int(s) for s in shape)
        self.split = split
        self.name = builder.name
        self._source = builder.as_data_source(split=split)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self._image_shape

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int):
        record = self._source[int(index)]
        return np.asarray(record[self.image_key], np.uint8), int(record[self.label_key])

    def get_batch(self, indices):
        records = self._source.__getitems__([int(i) for i in np.asarray(indices)])
        return {
            "image": np.stack([np.asarray(r[self.image_key], np.uint8) for r in records]),
            "label": np.asarray([r[self.label_key] for r in records], np.int32),
        }

    def __repr__(self) -> str:
        return f"TfdsSource({self.name!r}, split={self.split!r}, {len(self)} images of {self.image_shape})"


def class_names(builder, label_key: str | None = None) -> tuple[str, ...]:
    """The label names of a builder's ``ClassLabel`` feature."""
    keys = builder.info.supervised_keys or ("image", "label")
    feature = builder.info.features[label_key or keys[1]]
    names = getattr(feature, "names", None)
    if names:
        return tuple(names)
    return tuple(str(i) for i in range(int(feature.num_classes)))
