"""Train one experiment: ``python -m experiments.run --config=lenet [--config.x=y] [--workdir=DIR]``.

Several processes (hosts) train one model together when given ``--num_processes``, ``--process_id`` and
``--coordinator_address`` (or JAX's own environment variables for them).

The workdir belongs to one run: rerunning the same command resumes it (or, when it is finished, only
prints where its summary is); another config on it, or a second process while one runs, is refused with
one line. Ctrl-C / SIGTERM save a checkpoint and exit with 130 / 143 ("interrupted at step N; rerun the
same command to resume"); a mistake in the config or its values exits with 1 and one ``error: ...`` line.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.config_resolver import default_workdir, run_app

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config name in configs/ (e.g. lenet) or path[:arg].", lock_config=True)
flags.DEFINE_string("workdir", None, "Output folder (default: runs/<config name>).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for a multi-process run.")
flags.DEFINE_integer("num_processes", 1, "Number of processes in a multi-process run.")
flags.DEFINE_integer("process_id", 0, "This process's index in a multi-process run.")


def main(argv):
    del argv
    if FLAGS.verbosity == 0:  # absl's default: keep the libraries' INFO chatter (orbax) off the terminal
        logging.set_verbosity(logging.WARNING)
    if FLAGS.config is None:
        raise app.UsageError("--config=NAME is required")
    if FLAGS.config.get("trainer", "cnn") == "hog_svm":  # the classic baseline (configs/hog_svm.py)
        from cnnjax.classic import train_and_evaluate_classic

        train_and_evaluate_classic(FLAGS.config, FLAGS.workdir or default_workdir(sys.argv))
        return
    if FLAGS.num_processes > 1:
        from cnnjax.training.mesh import initialize_distributed

        if not FLAGS.coordinator_address:
            raise app.UsageError("--num_processes > 1 needs --coordinator_address=HOST:PORT")
        initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    from cnnjax.training import train_and_evaluate

    train_and_evaluate(FLAGS.config, FLAGS.workdir or default_workdir(sys.argv))


def run():
    run_app(main)


if __name__ == "__main__":
    run()
