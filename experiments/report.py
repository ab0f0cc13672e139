"""Pictures of a finished run: ``python -m experiments.report --workdir=DIR [--out_dir=DIR] [--num_confused=16]``.

Writes ``learning_curves.png`` (metrics.jsonl), ``confusion_matrix.png`` and ``most_confused.png`` (the test
set through the run's newest checkpoint) into the workdir, or into ``--out_dir``.
"""

from __future__ import annotations

from absl import app, flags, logging

from experiments.config_resolver import run_app

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The workdir of a run of experiments.run.")
flags.DEFINE_string("out_dir", None, "Where the PNGs go (default: the workdir).")
flags.DEFINE_integer("num_confused", 16, "How many of the most confidently misclassified test images to show.")


def main(argv):
    del argv
    if FLAGS.verbosity == 0:
        logging.set_verbosity(logging.WARNING)
    if not FLAGS.workdir:
        raise app.UsageError("--workdir=DIR is required")
    if FLAGS.num_confused < 1:
        raise ValueError(f"--num_confused={FLAGS.num_confused} must be >= 1")
    from cnnjax.training.report import write_report

    for path in write_report(FLAGS.workdir, FLAGS.out_dir, FLAGS.num_confused):
        print(path)


def run():
    run_app(main)


if __name__ == "__main__":
    run()
