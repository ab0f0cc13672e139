"""Run a sweep: ``python -m experiments.sweep --config=conv_ablation [--workdir=DIR] [--dry-run] [--workers=N]
[--executor=local|submitit] [--only=GLOB] [--collect] [--vmap_seeds]``.

- ``--dry-run``: list every trial (folder name, full overrides with the seed) after checking all of them;
  trains nothing, writes nothing.
- ``--workers=N``: N local trial processes, each pinned to its share of the cores (default: one per core, at
  most one per trial to train; ``--workers=1``: one trial after another in this process).
- ``--collect``: only gather ``results.csv``, ``results.md`` and the plots from the trials' ``summary.json``.
- ``--executor=submitit``: a Slurm job array (``--submitit_cluster=local`` runs the jobs as local processes);
  ``--partition``, ``--timeout_min``, ``--cpus_per_task`` go to Slurm.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.config_resolver import default_workdir, run_app

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Sweep config name in configs/ or path[:arg].", lock_config=False)
flags.DEFINE_string("workdir", None, "Output folder (default: runs/<config name>).")
flags.DEFINE_boolean("dry-run", False, "List and check every trial; train nothing.")
flags.DEFINE_integer("workers", None, "Local trials run in this many processes, each on its share of the cores "
                     "(default: one per core, at most one per trial to train; 1: one after another in this process).")
flags.DEFINE_string("executor", "local", "local | submitit")
flags.DEFINE_string("only", None, "Train only the trials whose folder name matches this glob.")
flags.DEFINE_boolean("collect", False, "Only gather results.csv/results.md/plots from the trial folders.")
flags.DEFINE_boolean("vmap_seeds", False, "Train the seeds of a point together, jax.vmap over seeds.")
flags.DEFINE_string("submitit_cluster", "slurm", "submitit cluster: slurm | local | debug")
flags.DEFINE_string("partition", None, "Slurm partition (submitit).")
flags.DEFINE_integer("timeout_min", 60, "Time limit of one trial's job in minutes (submitit).")
flags.DEFINE_integer("cpus_per_task", None, "Cores per trial's job (submitit).")


def main(argv):
    del argv
    if FLAGS.verbosity == 0:
        logging.set_verbosity(logging.WARNING)
    if FLAGS.config is None:
        raise app.UsageError("--config=NAME is required")
    from cnnjax.training.sweeps import collect, dry_run_lines, plan, run_sweep

    workdir = FLAGS.workdir or default_workdir(sys.argv)
    if FLAGS["dry-run"].value:
        for line in dry_run_lines(plan(FLAGS.config, FLAGS.only)):
            print(line)
        return
    if FLAGS.collect:
        trials = plan(FLAGS.config, FLAGS.only)
        rows, missing = collect(workdir, [t.name for t in trials])
        print(f"collected {len(rows)} finished trial(s) of {len(trials)} in {workdir}"
              + (f"; not finished: {', '.join(missing)}" if missing else ""))
        if rows:
            print(open(f"{workdir}/results.md").read(), end="")
        return
    parameters = {"timeout_min": FLAGS.timeout_min}
    if FLAGS.partition:
        parameters["slurm_partition"] = FLAGS.partition
    if FLAGS.cpus_per_task:
        parameters["cpus_per_task"] = FLAGS.cpus_per_task
    result = run_sweep(FLAGS.config, workdir, workers=FLAGS.workers, executor=FLAGS.executor, only=FLAGS.only,
                       vmap_seeds=FLAGS.vmap_seeds, submitit_cluster=FLAGS.submitit_cluster,
                       submitit_parameters=parameters)
    if result["rows"]:
        print(open(f"{workdir}/results.md").read(), end="")
    if result["failures"]:
        sys.exit("error: " + "; ".join(f"{name}: {why}" for name, why in result["failures"]))


def run():
    run_app(main)


if __name__ == "__main__":
    run()
