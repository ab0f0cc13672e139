"""Print a model summary: ``python -m experiments.summary --config=NAME [--config.model.kwargs.x=y]``.

Per layer: output shape, parameters, FLOPs and receptive field; totals. The model is
``config.model.name`` built with ``config.model.kwargs``; the input shape and class count come from the
config's data set when it is a known one (fashion_mnist, mnist, cifar10, digits), else pass
``--input_shape=H,W,C`` and ``--num_classes=K``. Nothing is trained or loaded.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from experiments.config_resolver import run_app

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config name in configs/ (e.g. lenet) or path[:arg].", lock_config=True)
flags.DEFINE_string("input_shape", None, "H,W,C of one image (default: from the config's data set).")
flags.DEFINE_integer("num_classes", None, "Number of classes (default: from the config's data set).")

# (image shape, classes) of the data sets whose shape is known without reading them.
KNOWN_DATASETS = {
    "fashion_mnist": ((28, 28, 1), 10),
    "mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
    "digits": ((8, 8, 1), 10),
}


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"--input_shape={text!r} must be three positive ints H,W,C, e.g. 28,28,1")
    return shape


def main(argv):
    del argv
    from cnnjax.models import get_model
    from cnnjax.models.summary import summarize

    config = FLAGS.config
    if config is None:
        raise app.UsageError("--config=NAME is required")
    dataset = config.get("dataset", {}).get("name", "") if "dataset" in config else ""
    known = KNOWN_DATASETS.get(dataset.split(":")[-1] if dataset else "")
    if FLAGS.input_shape:
        shape = parse_shape(FLAGS.input_shape)
    elif known:
        shape = known[0]
    else:
        raise ValueError(f"the input shape of data set {dataset!r} is not known here: pass --input_shape=H,W,C")
    num_classes = FLAGS.num_classes or (known[1] if known else None)
    if num_classes is None:
        raise ValueError(f"the class count of data set {dataset!r} is not known here: pass --num_classes=K")
    kwargs = dict(config.model.get("kwargs", {}) or {})
    model = get_model(config.model.name, num_classes=num_classes, **kwargs)
    print(f"model {config.model.name} {kwargs if kwargs else ''}".rstrip())
    print(summarize(model, shape).table())


def run():
    run_app(main)


if __name__ == "__main__":
    run()
