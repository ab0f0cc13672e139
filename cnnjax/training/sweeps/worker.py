"""A local worker process: ``python -m cnnjax.training.sweeps.worker`` reads one pickled trial from stdin.

The pickle is ``(config, workdir, meta, caches)``; the process takes the sweep's compilation caches
(``executors.use_cache_settings``), trains the trial with :func:`run_trial` and exits 0, or prints the error and
exits 1. Its CPU affinity (its share of the cores) is set by the parent.
"""

from __future__ import annotations

import pickle
import sys


def main() -> int:
    config, workdir, meta, caches = pickle.load(sys.stdin.buffer)
    from cnnjax.training.sweeps.executors import use_cache_settings
    from cnnjax.training.sweeps.trial import run_trial

    use_cache_settings(caches)
    try:
        run_trial(config, workdir, meta)
    except (ValueError, TypeError, OSError, FloatingPointError, RuntimeError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
