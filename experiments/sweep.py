"""Run a sweep: ``python -m experiments.sweep --config=conv_ablation [--workdir=DIR]``.

Prints the results table (also in ``DIR/results.md`` and ``DIR/results.json``).
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.config_resolver import default_workdir, run_app

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Sweep config name in configs/ or path[:arg].", lock_config=False)
flags.DEFINE_string("workdir", None, "Output folder (default: runs/<config name>).")


def main(argv):
    del argv
    if FLAGS.verbosity == 0:
        logging.set_verbosity(logging.WARNING)
    if FLAGS.config is None:
        raise app.UsageError("--config=NAME is required")
    if "sweep" not in FLAGS.config:
        raise app.UsageError("this config has no 'sweep' field; sweeps are configs like configs/conv_ablation.py")
    from cnnjax.training.sweep import results_table, run_sweep

    rows = run_sweep(FLAGS.config, FLAGS.workdir or default_workdir(sys.argv))
    print(results_table(rows))


def run():
    run_app(main)


if __name__ == "__main__":
    run()
