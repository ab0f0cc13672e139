"""A ResNet-20 train step with cnnjax's fast paths against the same step traced with the reference ops only
(``cnnjax.ops.fast.reference_only()``), interleaved in one process: what ``cnnjax.ops.fast`` buys a model.

    python -m benchmarks.fast_vs_reference grouped:4 separable      # conv variants of the blocks
    taskset -c 1 python -m benchmarks.fast_vs_reference standard     # one core
"""

from __future__ import annotations

import argparse
import sys

from experiments import process_defaults


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="+", help="conv variants of ResNet-20's blocks, e.g. grouped:4")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    process_defaults.apply_xla_defaults()  # before JAX starts; no compilation cache (nothing to measure there)
    from benchmarks.harness import interleaved
    from benchmarks.run import _jax_contestant, _train_data
    from cnnjax.ops import fast

    images, labels = _train_data("resnet20", 128, 1)
    contestants = {}
    for conv in args.variants:
        contestants[f"{conv} fast paths"] = _jax_contestant("resnet20", 128, images=images, labels=labels,
                                                            conv=conv)[0]
        with fast.reference_only():  # the step is traced (first call) inside _jax_contestant
            contestants[f"{conv} reference"] = _jax_contestant("resnet20", 128, images=images, labels=labels,
                                                               conv=conv)[0]
    result = interleaved(contestants, repeats=args.repeats, number=1, warmup=1)
    for name, r in result.items():
        print(f"{name:28s} median {r['median_s'] * 1e3:8.0f} ms/step, repeats "
              f"{[round(t * 1e3) for t in r['repeats_s']]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
