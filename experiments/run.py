"""Train one experiment: ``python -m experiments.run --config=lenet [--config.x=y] [--workdir=DIR]``."""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from experiments.config_resolver import UnknownConfigError, resolve_argv

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config name in configs/ (e.g. lenet) or path[:arg].", lock_config=True)
flags.DEFINE_string("workdir", None, "Output folder (default: runs/<config name>).")


def default_workdir(argv: list[str]) -> str:
    for a in argv:
        if a.startswith("--config="):
            name = a[len("--config="):].split(":")[0]
            return "runs/" + name.rsplit("/", 1)[-1].removesuffix(".py")
    return "runs/default"


def main(argv):
    del argv
    from cnnjax.training import train_and_evaluate

    if FLAGS.config is None:
        raise app.UsageError("--config=NAME is required")
    train_and_evaluate(FLAGS.config, FLAGS.workdir or default_workdir(sys.argv))


def run():
    try:
        sys.argv = resolve_argv(sys.argv)
    except UnknownConfigError as e:
        sys.exit(f"error: {e}")
    try:
        app.run(main)
    except (ValueError, TypeError, FileNotFoundError, PermissionError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    run()
