"""Targeted mutation testing: put one deliberate bug at a time into a copy of cnnjax and run the tests that
should catch it.

    .venv/bin/python -m tests.mutants                  # every mutant, 2 at a time, on the committed code (HEAD)
    .venv/bin/python -m tests.mutants --only ops-      # the mutants whose id starts with "ops-"
    .venv/bin/python -m tests.mutants --list           # ids, files and test sets, nothing run

Each mutant is an exact text substitution in one file of ``cnnjax/``. The code is never mutated in place:
the revision (``--rev``, default HEAD; ``--rev=WORKTREE`` copies the working tree's tracked and untracked,
not ignored files) is exported to a temporary folder per worker, the mutant is applied there, the named
default (not slow) tests run there with ``PYTHONPATH`` pointing at the copy (``-x``, a timeout per mutant),
and the file is restored before the next mutant. A mutant whose pattern does not occur exactly ``count``
times is reported as STALE and makes the command fail: patterns must be updated with the code, never
silently skipped. Every test set is first run on the unmutated copy; a set that fails there is reported as
BROKEN (its mutants would prove nothing).

A mutant is *killed* when its tests fail (or time out), *survived* when they pass. Survivors that change
behaviour are gaps in the tests; ``equivalent=...`` marks a mutant known not to change behaviour (with the
reason), so it is reported apart. ``tests/README.md`` records the last run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Mutant:
    id: str
    path: str  # relative to the repository root
    pattern: str
    replacement: str
    tests: tuple[str, ...]  # pytest node ids or files, relative to the repository root
    what: str  # the bug in words
    count: int = 1  # occurrences of ``pattern`` that are all replaced
    equivalent: str = ""  # why this mutant cannot change behaviour (reported apart from survivors)
    # (pattern, replacement) pairs of the same bug in an earlier or later form of the code, used when
    # ``pattern`` is absent (a file another change is rewriting); still exactly ``count`` occurrences
    alternatives: tuple[tuple[str, str], ...] = ()

    def substitution(self, text: str) -> tuple[str, str] | None:
        """The (pattern, replacement) that occurs exactly ``count`` times in ``text``, or None (stale)."""
        for pattern, replacement in ((self.pattern, self.replacement), *self.alternatives):
            if text.count(pattern) == self.count:
                return pattern, replacement
        return None


SOURCES = "cnnjax/data/sources.py"
PIPELINE = "cnnjax/data/pipeline.py"
STEPS = "cnnjax/training/steps.py"
CHECKPOINT = "cnnjax/training/checkpoint.py"
TRAIN = "cnnjax/training/train.py"
IDENTITY = "cnnjax/training/run_identity.py"
EXECUTABLES = "cnnjax/training/executable_cache.py"

T_SOURCES = ("tests/data/test_sources.py", "tests/data/test_tfds.py")
T_PIPELINE = ("tests/data/test_pipeline.py",)
T_STEP = ("tests/training/test_train_step.py", "tests/training/test_optim_features.py")
# The in-process resume tests (seconds); test_resume.py's SIGKILL test on Fashion-MNIST takes minutes and adds
# nothing for these mutants.
T_RESUME = ("tests/training/test_resume.py::test_checkpoints_restore_the_newest_keep_n_and_the_best",
            "tests/training/test_resume.py::test_resume_from_a_mid_epoch_checkpoint_is_exact",
            "tests/training/test_resume.py::test_truncated_latest_checkpoint_falls_back",
            "tests/training/test_resume.py::test_checkpoint_of_another_setup_is_refused",
            "tests/training/test_resume.py::test_synthetic_run_is_far_from_its_start")
T_LOOP = ("tests/training/test_optim_features.py::test_the_run_trains_with_the_configured_step",
          "tests/training/test_optim_features.py::test_evaluation_never_augments") + T_RESUME
T_DAMAGED = "tests/training/test_reliability.py::test_damaged_checkpoint_is_never_loaded_and_the_run_ends_bitwise_equal"
T_NAN = ("tests/training/test_errors_and_freezing.py::test_nan_loss_stops_with_the_step_and_keeps_last_good_checkpoint",
         "tests/training/test_train_step.py::test_first_nonfinite_step_names_the_step_that_went_bad")
T_FROZEN = ("tests/training/test_errors_and_freezing.py::test_frozen_backbone_and_its_batchnorm_stay_bitwise_unchanged",)

T_FAST = ("tests/ops/test_fast_paths.py",)
T_EXECUTABLES = ("tests/training/test_executable_cache.py",)
T_POOL = T_FAST + ("tests/ops/test_local_and_pooling.py", "tests/ops/test_backprop.py")
T_CONV = T_FAST + ("tests/ops/test_conv_oracle.py", "tests/ops/test_backprop.py")
T_TRANSPOSE = T_FAST + ("tests/ops/test_transpose.py",)
T_PAD = ("tests/ops/test_arithmetic.py", "tests/ops/test_conv_oracle.py", "tests/ops/test_local_and_pooling.py",
         "tests/ops/test_worked_examples.py")
POOL_FAST = "cnnjax/ops/fast/pool.py"
BANDED = "cnnjax/ops/fast/banded.py"
DEPTHWISE = "cnnjax/ops/fast/depthwise.py"
GROUPED = "cnnjax/ops/fast/grouped.py"
DIRECT_CC = "cnnjax/ops/fast/cc/direct_conv.cc"
DIRECT_PY = "cnnjax/ops/fast/direct.py"
T_DIRECT = ("tests/ops/test_fast_paths.py", "tests/ops/test_direct.py")
CHANNELS_CC = "cnnjax/ops/fast/cc/channel_sums.cc"
CHANNELS_PY = "cnnjax/ops/fast/channels.py"
T_BATCH_NORM = ("tests/ops/test_fast_paths.py::test_batch_norm_equals_reference",
                "tests/ops/test_fast_paths.py::test_jacfwd_equals_jacrev_and_the_reference_jacobian",
                "tests/layers/test_normalization.py")

MUTANTS: tuple[Mutant, ...] = (
    # --- cnnjax/ops
    Mutant("ops-pool-ties-last", POOL_FAST, "for k in reversed(range(len(cells) - 1)):",
           "for k in range(len(cells) - 1):",
           T_POOL, "tiled max-pool: the gradient of a tie goes to a later maximum, not the first (PyTorch)"),
    Mutant("ops-pool-nan-loses", POOL_FAST, "(cells[k] == y) | jnp.isnan(cells[k])", "cells[k] == y", T_POOL,
           "tiled max-pool: a NaN does not win its window's gradient (it goes to the last cell)"),
    Mutant("ops-pool-tiled-with-padding", POOL_FAST, "return window == stride and all(lo == hi == 0 for lo, hi in pads)",
           "return window == stride", T_POOL, "the tiled max-pool is taken for padded inputs (padding ignored)"),
    Mutant("ops-avg-pool-counts-padding", "cnnjax/ops/pooling.py",
           "if count_include_pad or all(lo == hi == 0 for lo, hi in pads):", "if True:", T_POOL,
           "avg_pool(count_include_pad=False) divides by the whole window"),
    Mutant("ops-banded-last-axis-dilation", BANDED, "== d * np.arange(k)[:, None, None]", "== np.arange(k)[:, None, None]",
           T_CONV, "banded GEMM: dilation along the last spatial axis dropped"),
    Mutant("ops-banded-other-axes-dilation", BANDED, "slice(u * d, u * d + o)", "slice(u, u + o)", T_CONV,
           "banded GEMM (sliced rows): dilation along the other spatial axes dropped"),
    Mutant("ops-banded-gather-dilation", BANDED, "sum(u * d * st for u, d, st in", "sum(u * st for u, d, st in",
           T_CONV, "banded GEMM (gathered rows, the input gradient): dilation along the other axes dropped"),
    Mutant("ops-banded-nan-guard-off", BANDED, "lax.cond(_all_finite(x),", "lax.cond(True,", T_CONV,
           "banded GEMM: a NaN pixel spreads over its whole band (no reference fallback)"),
    Mutant("ops-banded-kernel-grad-dropped", BANDED, "terms.append(_forward(x, dkernel, pads, dilations, reference))",
           "terms.append(0 * _forward(x, dkernel, pads, dilations, reference))", T_CONV,
           "banded GEMM: the kernel gradient is zero"),
    Mutant("ops-depthwise-dilation", DEPTHWISE, "*[slice(t * d, t * d + (o - 1) * s + 1, s) for",
           "*[slice(t, t + (o - 1) * s + 1, s) for", T_CONV, "depthwise fast path: dilation dropped"),
    Mutant("ops-depthwise-kernel-grad-dropped", DEPTHWISE, "return dx, kernel_gradient(x, dy, kernel.shape, strides, pads, dilations)",
           "return dx, 0 * kernel_gradient(x, dy, kernel.shape, strides, pads, dilations)", T_CONV,
           "depthwise fast path: the kernel gradient is zero"),
    Mutant("ops-depthwise-fold-first-image-only", DEPTHWISE, "[groups[:, i] for i in range(fold)]",
           "[groups[:, i] for i in range(1)]", T_FAST,
           "depthwise kernel gradient: only the first image of each group of BATCH_FOLD counts"),
    Mutant("ops-depthwise-fold-batch-unpadded", DEPTHWISE, "extra = -a.shape[0] % fold", "extra = 0", T_FAST,
           "depthwise kernel gradient: a batch that is not a whole number of groups is not padded (fails to reshape)"),
    Mutant("ops-depthwise-kernel-gradient-unmaterialized", DEPTHWISE,
           "x = materialized(_padded_input(x, kernel_shape, pads, extra_images=extra))",
           "x = _padded_input(x, kernel_shape, pads, extra_images=extra)",
           ("tests/ops/test_fast_paths.py::test_depthwise_kernel_gradient_reads_materialized_input_and_output_gradient",),
           "the depthwise kernel gradient recomputes its inputs' producers per tap (slower, same values)"),
    Mutant("ops-grouped-one-kernel", GROUPED, "kernel[..., g * c_out : (g + 1) * c_out]", "kernel[..., 0:c_out]",
           T_CONV, "grouped fast path: every group uses group 0's filters"),
    Mutant("ops-grouped-block-diagonal-unguarded", GROUPED,
           "lax.cond(jnp.all(jnp.isfinite(x)), lambda y, x, k: y, lambda y, x, k: per_group_conv(x, k), y, x, kernel)",
           "y", ("tests/ops/test_fast_paths.py::test_grouped_equals_reference",),
           "block-diagonal grouped conv: a NaN / Inf input reaches the other groups' outputs (0 * NaN)"),
    Mutant("ops-grouped-block-diagonal-by-product", GROUPED,
           "jnp.where(same_group, tiled, jnp.zeros((), kernel.dtype))", "(tiled * same_group)",
           ("tests/ops/test_fast_paths.py::test_grouped_equals_reference",),
           "the block-diagonal kernel's zeros as products: the kernel gradient takes NaN from other groups"),
    Mutant("ops-conv-padding-inside-always", "cnnjax/ops/conv.py",
           "return any(lo or hi for lo, hi in pads) and (small_output or past_kernel)",
           "return False", ("tests/ops/test_conv_oracle.py::test_conv_gradients_match_torch_autograd",),
           "padded convs with a one-pixel output axis keep the padding inside the conv (XLA:CPU aborts compiling)"),
    Mutant("ops-conv-padding-past-kernel-inside", "cnnjax/ops/conv.py",
           "return any(lo or hi for lo, hi in pads) and (small_output or past_kernel)",
           "return any(lo or hi for lo, hi in pads) and small_output",
           ("tests/ops/test_conv_oracle.py::test_conv_gradient_at_xla_cpu_defects_matches_torch",),
           "low padding past the kernel stays inside the conv: XLA:CPU's input gradient reads outside the input"),
    Mutant("ops-conv-small-output-padding-inside", "cnnjax/ops/conv.py", "small_output = any(o <= e for",
           "small_output = 1 in outs or any(False for",
           ("tests/ops/test_conv_oracle.py::test_conv_gradient_at_xla_cpu_defects_matches_torch",),
           "only one-pixel outputs take the padding first: XLA:CPU aborts compiling other small outputs' gradients"),
    Mutant("ops-conv-bias-dropped", "cnnjax/ops/conv.py", "y = y + a.bias.astype(y.dtype)", "y = y", T_CONV,
           "conv ignores its bias"),
    Mutant("ops-transpose-kernel-not-flipped", "cnnjax/ops/transpose.py", "rhs = jnp.flip(rhs, axis=tuple(range(nd)))",
           "rhs = rhs", T_TRANSPOSE, "transposed conv without the 180-degree kernel rotation"),
    Mutant("ops-same-padding-extra-on-the-left", "cnnjax/ops/padding.py", "return [(e // 2, e - e // 2) for e in effective]",
           "return [(e - e // 2, e // 2) for e in effective]", T_PAD,
           "SAME padding puts the odd extra cell before the input (TensorFlow puts it after)"),
    Mutant("ops-reflect-is-symmetric", "cnnjax/ops/padding.py", '"reflect": "reflect"', '"reflect": "symmetric"',
           T_PAD, "reflect padding repeats the edge pixel"),
    # --- cnnjax/data/sources.py
    Mutant("split-overlap", SOURCES, "np.sort(order[validation_size:])", "np.sort(order[:len(order) - validation_size])",
           T_SOURCES, "split_validation: train overlaps validation (sizes unchanged)"),
    Mutant("split-unsorted-held", SOURCES, "held, kept = np.sort(order[:validation_size])",
           "held, kept = np.sort(order[1:validation_size + 1])", T_SOURCES,
           "split_validation: one validation example is also in train, one example in neither"),
    Mutant("subset-get-batch-ignores-indices", SOURCES, "gather_batch(self.source, self.indices[np.asarray(indices)])",
           "gather_batch(self.source, np.asarray(indices))", T_SOURCES, "Subset.get_batch reads the parent's examples, not its own"),
    Mutant("take-drops-one", SOURCES, "return ArraySource(self.images[:n], self.labels[:n])",
           "return ArraySource(self.images[:n - 1], self.labels[:n - 1])", T_SOURCES,
           "ArraySource.take keeps n - 1 examples"),
    Mutant("labels-shifted", SOURCES, 'return {"image": self.images[indices], "label": self.labels[indices].astype(np.int32)}',
           'return {"image": self.images[indices], "label": np.roll(self.labels[indices], 1).astype(np.int32)}',
           T_SOURCES + T_PIPELINE, "ArraySource.get_batch: labels no longer with their images"),
    # --- cnnjax/data/pipeline.py
    Mutant("epoch-seed-ignores-epoch", PIPELINE, "return (int(seed) * 1_000_003 + int(epoch)) % (2**31 - 1)",
           "return (int(seed) * 1_000_003) % (2**31 - 1)", T_PIPELINE, "every epoch has the same order"),
    Mutant("start-batch-ignored", PIPELINE, "for b in range(start_batch, num_batches):",
           "for b in range(0, num_batches):", T_PIPELINE, "train_batches ignores start_batch (plain path)"),
    Mutant("start-batch-ignored-threads", PIPELINE, "grain.MapDataset.range(start_batch, num_batches)",
           "grain.MapDataset.range(0, num_batches)", T_PIPELINE, "train_batches ignores start_batch (threads)"),
    Mutant("process-slice-overlap", PIPELINE, "start = (b * process_count + process_index) * batch_size",
           "start = (b * process_count) * batch_size", T_PIPELINE, "every process takes the same slice"),
    Mutant("eval-mask-all-valid", PIPELINE, 'batch["mask"] = (np.arange(len(idx)) < valid).astype(np.float32)',
           'batch["mask"] = np.ones(len(idx), np.float32)', T_PIPELINE, "padding examples counted in evaluation"),
    Mutant("eval-drops-last-partial", PIPELINE, "starts = list(range(0, len(own), batch_size))",
           "starts = list(range(0, len(own) - batch_size + 1, batch_size))", T_PIPELINE,
           "evaluation drops the last partial batch"),
    Mutant("eval-strided-wrong", PIPELINE, "own = np.arange(process_index, n, process_count)",
           "own = np.arange(0, n, process_count)", T_PIPELINE, "every process evaluates process 0's examples"),
    Mutant("steps-per-epoch-ignores-processes", PIPELINE, "return (num_examples // process_count) // batch_size",
           "return num_examples // batch_size", T_PIPELINE + ("tests/training/test_sharding.py",),
           "steps_per_epoch counts all examples for each process"),
    # --- cnnjax/training/steps.py
    Mutant("train-step-drops-label-smoothing", STEPS, 'per_example_loss(logits, batch["label"], label_smoothing).mean()',
           'per_example_loss(logits, batch["label"]).mean()', T_STEP, "train_step ignores label_smoothing"),
    Mutant("smoothing-wrong-mass", STEPS, "label_smoothing / num_classes", "label_smoothing / (num_classes - 1)",
           T_STEP, "label smoothing spreads s / (K - 1) instead of s / K"),
    Mutant("train-step-no-augmentation", STEPS, "images = augment_fn(aug_rng, images)", "images = images",
           T_STEP, "train_step never augments"),
    Mutant("step-rng-not-folded", STEPS, "rng = jax.random.fold_in(state.rng, state.step)", "rng = state.rng",
           T_STEP, "the same augmentation/dropout draw at every step"),
    Mutant("ema-decay-swapped", STEPS, "ema_decay * e + (1.0 - ema_decay) * p", "(1.0 - ema_decay) * e + ema_decay * p",
           T_STEP, "EMA weights the new parameters by the decay"),
    Mutant("batch-stats-not-updated", STEPS, 'batch_stats=updates.get("batch_stats", state.batch_stats)',
           "batch_stats=state.batch_stats", T_STEP + T_FROZEN,
           "BatchNorm running statistics never updated"),
    Mutant("step-counter-frozen", STEPS, "step=state.step + 1,", "step=state.step,", T_STEP, "step never advances"),
    Mutant("train-sum-count-frozen", STEPS, '"count": sums["count"] + 1', '"count": sums["count"]', T_LOOP,
           "epoch train metrics divided by 1 instead of the number of steps"),
    Mutant("nonfinite-step-off-by-one", STEPS, "& bad, step + 1, sums", "& bad, step, sums",
           T_NAN, "NaN reported one step early"),
    Mutant("eval-ignores-mask", STEPS, 'jnp.sum(get_loss(loss)(logits, batch["label"]) * mask)',
           'jnp.sum(get_loss(loss)(logits, batch["label"]))', T_STEP + T_LOOP, "evaluation loss counts padding"),
    Mutant("eval-ignores-ema", STEPS, "state.variables(use_ema)", "state.variables(False)", T_STEP,
           "evaluation never uses the EMA weights"),
    Mutant("topk-off-by-one", STEPS, "top = jax.lax.top_k(logits, k)[1]", "top = jax.lax.top_k(logits, k - 1)[1]",
           T_STEP, "top-k accuracy counts the k - 1 largest"),
    # --- cnnjax/ops/fast/materialize.py
    Mutant("ops-materialize-dropped", "cnnjax/ops/fast/materialize.py",
           "return x / _unfoldable_ones(x)", "return x",
           ("tests/ops/test_fast_paths.py::test_kernel_gradient_reads_the_materialized_input_not_its_producers",),
           "the conv input is not materialized (the kernel gradient recomputes its producers)"),
    Mutant("ops-materialize-not-one", "cnnjax/ops/fast/materialize.py", "uint(width.bit_length())", "uint(1)",
           ("tests/ops/test_fast_paths.py::test_materialized_is_the_identity_bit_for_bit_with_identity_derivatives",),
           "the divisor is not 1 for every bit pattern"),
    # --- cnnjax/ops/fast/strided.py
    Mutant("ops-strided-phase-misread", "cnnjax/ops/fast/strided.py",
           "slice(r, r + s * (m - 1) + 1, s)", "slice(0, s * (m - 1) + 1, s)",
           ("tests/ops/test_fast_paths.py::test_strided_equals_reference",),
           "every phase reads phase 0's pixels (the input gradient lands on the wrong pixels)"),
    Mutant("ops-strided-kernel-tangent-dropped", "cnnjax/ops/fast/strided.py",
           "terms.append(reference(x, dkernel))", "pass",
           ("tests/ops/test_fast_paths.py::test_strided_equals_reference",),
           "the kernel's tangent is dropped (no kernel gradient)"),
    # --- cnnjax/ops/fast/direct.cc / direct.py: the C++ convolution (rebuilt in the copy: its name hashes the source)
    Mutant("ops-direct-reads-past-the-right-edge", DIRECT_CC, "if (ix < 0 || ix >= g.w) continue;",
           "if (ix < 0 || ix > g.w) continue;", T_DIRECT,
           "a block at the right edge reads the pixel after the row instead of the zero padding"),
    Mutant("ops-direct-last-pixel-block-skipped", DIRECT_CC, "if (ox0 < g.ow) forward_tail",
           "if (ox0 + 1 < g.ow) forward_tail", T_DIRECT,
           "a last block of one pixel is never computed (its outputs are whatever the buffer held)"),
    Mutant("ops-direct-kernel-gradient-last-part-dropped", DIRECT_CC, "for (int64_t p = 1; p < parts; ++p)",
           "for (int64_t p = 1; p + 1 < parts; ++p)", T_DIRECT,
           "the kernel gradient leaves out the last range of images"),
    Mutant("ops-direct-kernel-gradient-range", DIRECT_CC, "std::min(out, (size - offset - 1) / s + 1)",
           "std::min(out, (size - offset) / s + 1)", T_DIRECT,
           "the kernel gradient adds an output pixel whose input lies in the padding (reads past the row)"),
    Mutant("ops-direct-input-gradient-unrotated", DIRECT_PY, "rotated = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)",
           "rotated = kernel.swapaxes(2, 3)", T_DIRECT, "the stride-1 input gradient uses the kernel unrotated"),
    Mutant("ops-direct-input-gradient-pads-swapped", DIRECT_PY, "back_pads = tuple((k - 1 - lo, k - 1 - hi)",
           "back_pads = tuple((k - 1 - hi, k - 1 - lo)", T_DIRECT,
           "the stride-1 input gradient pads the output gradient's sides the wrong way round"),
    Mutant("ops-direct-vmap-kernel-of-element-0", DIRECT_PY,
           "args = [jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)",
           "args = [jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.broadcast_to(jnp.moveaxis(a, d, 0)"
           "[:1], (size, *a.shape[:d], *a.shape[d + 1:]))", ("tests/ops/test_direct.py",),
           "under vmap with a kernel per element, every element uses the first element's kernel"),
    Mutant("cache-loads-before-the-ffi-targets-exist", EXECUTABLES, "    native.available()\n", "", T_EXECUTABLES,
           "a new process loads a program that calls the C++ kernels before their FFI targets are registered"),
    Mutant("cache-key-ignores-cc-files", EXECUTABLES, 'SOURCE_SUFFIXES = (".py", ".cc", ".h")', 'SOURCE_SUFFIXES = (".py", ".h")',
           T_EXECUTABLES, "a program is loaded after the C++ it calls has changed"),
    # --- cnnjax/ops/fast/cc/channel_sums.cc / channels.py, cnnjax/layers/normalization.py: BatchNorm
    Mutant("ops-channels-last-range-dropped", CHANNELS_CC, "for (int64_t p = 1; p < parts; ++p) sum += pp[p * c + k];",
           "for (int64_t p = 1; p + 1 < parts; ++p) sum += pp[p * c + k];", T_BATCH_NORM,
           "the per-channel sums leave out the last range of rows"),
    Mutant("ops-channels-row-per-block-dropped", CHANNELS_CC, "r < std::min(end, r0 + kBlockRows)",
           "r < std::min(end, r0 + kBlockRows - 1)", T_BATCH_NORM, "each block of 64 rows sums only 63"),
    Mutant("ops-channels-scale-transpose", CHANNELS_PY, "lambda ct, a, v: _dot_p.bind(ct, a))",
           "lambda ct, a, v: _dot_p.bind(ct, ct))", T_BATCH_NORM,
           "the per-channel scale's gradient multiplies the cotangent by itself (the scale parameter's gradient)"),
    Mutant("ops-channels-dot-transpose", CHANNELS_PY,
           "lambda ct, a, b: _scale_p.bind(b, ct), lambda ct, a, b: _scale_p.bind(a, ct))",
           "lambda ct, a, b: _scale_p.bind(a, ct), lambda ct, a, b: _scale_p.bind(b, ct))", T_BATCH_NORM,
           "channel_dot's transposes swapped (each operand's cotangent scales the operand itself)"),
    Mutant("ops-channels-vmap-scale", CHANNELS_PY, "lambda a, v: a * _per_channel(v, a.ndim))",
           "lambda a, v: a * _per_channel(v[:1], a.ndim))", T_BATCH_NORM,
           "under vmap every element is scaled by the first element's per-channel values"),
    Mutant("ops-channels-centered-dot-uncentred", CHANNELS_CC, "const float centered = xr[k] - m[k];",
           "const float centered = xr[k];", T_BATCH_NORM,
           "the scale's gradient sums dY X, forgetting to centre X"),
    Mutant("ops-channels-centre-gradient-sign", CHANNELS_PY, "-_sum_p.bind(ct_b) if ad.is_undefined_primal(m)",
           "_sum_p.bind(ct_b) if ad.is_undefined_primal(m)", T_BATCH_NORM,
           "the mean's cotangent through X - mean has the wrong sign"),
    Mutant("ops-channels-centered-dot-transpose", CHANNELS_PY, "lambda: _centered_scale_p.bind(x, m, ct)), None, None]",
           "lambda: _centered_scale_p.bind(x, m * 0, ct)), None, None]", T_BATCH_NORM,
           "the centred dot's transpose with respect to dY forgets the centre (second derivatives)"),
    Mutant("layers-bn-momentum-swapped", "cnnjax/layers/normalization.py",
           "ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean",
           "ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean", T_BATCH_NORM,
           "the running mean keeps 10% of its value instead of 90%"),
    Mutant("layers-bn-updates-while-initializing", "cnnjax/layers/normalization.py",
           "if not self.is_initializing():", "if True:", T_BATCH_NORM,
           "init already moves the running averages (flax does not)"),
    # --- cnnjax/training/train.py: the initial state
    Mutant("init-llvm-level-0", "cnnjax/training/train.py", '{"xla_backend_optimization_level": 1}',
           '{"xla_backend_optimization_level": 0}', ("tests/training/test_initial_state.py",),
           "the init program at LLVM level 0 (faster to compile, other bits)"),
    Mutant("init-dropout-key-for-params", "cnnjax/training/train.py",
           'model.init({"params": init_rng, "dropout": dropout_rng}',
           'model.init({"params": dropout_rng, "dropout": init_rng}', ("tests/training/test_initial_state.py",),
           "the parameters drawn from the dropout key"),
    # --- cnnjax/training/executable_cache.py and the run's program key
    Mutant("cache-key-ignores-code", EXECUTABLES, '"code": code_fingerprint(),', '"code": "",', T_EXECUTABLES,
           "a program compiled from other code is loaded"),
    Mutant("cache-key-ignores-arguments", EXECUTABLES, '"arguments": _describe(signature),', '', T_EXECUTABLES,
           "a program compiled for other shapes or dtypes is loaded (the file of another signature)"),
    Mutant("cache-checksum-not-verified", EXECUTABLES, "if hashlib.sha256(body).hexdigest().encode() != checksum:",
           "if False:", T_EXECUTABLES, "a damaged file is loaded"),
    Mutant("cache-saves-what-jaxs-cache-loaded", EXECUTABLES, "    if not jax.config.jax_enable_compilation_cache:\n",
           "    if True:\n", T_EXECUTABLES,
           "an executable JAX's persistent cache loaded is saved (XLA:CPU drops kernels: 'Function ... not found')"),
    Mutant("cache-never-loads", EXECUTABLES, "        if preload is not None or os.path.exists(path):\n",
           "        if False:\n", T_EXECUTABLES, "every run compiles its programs again (the cache only writes)"),
    Mutant("cache-never-preloads", EXECUTABLES, '        preload = _run["preloads"].pop(path, None)\n',
           "        preload = None\n", T_EXECUTABLES,
           "a warm run loads its train step only when it first calls it, after the initial state"),
    Mutant("cache-followers-not-recorded", EXECUTABLES, "    if leader is None or name in _run[\"seen\"]:\n",
           "    if True:\n", T_EXECUTABLES, "no list of the programs that follow a leading one: nothing preloaded"),
    Mutant("cache-leaves-follower-lists", EXECUTABLES, "            _unlink_if_there(_next_path(path))\n", "",
           T_EXECUTABLES, "a deleted program's list of followers stays in the folder"),
    Mutant("cache-never-pruned", EXECUTABLES, "            _prune(self._folder, _max_bytes, keep=path)\n", "",
           T_EXECUTABLES, "the executable folder grows without bound"),
    Mutant("sweep-workers-without-caches", "cnnjax/training/sweeps/worker.py", "    use_cache_settings(caches)\n", "",
           ("tests/training/test_sweep.py::test_trial_processes_use_the_sweeps_caches",),
           "a sweep's worker processes compile every trial's programs (no compilation caches)"),
    Mutant("program-key-drops-the-config", TRAIN, "if k not in HOST_ONLY_FIELDS}", "if k == 'seed'}",
           T_EXECUTABLES, "runs of different configs share compiled programs"),
    Mutant("metrics-tensorboardx-imports-torch", "cnnjax/training/metrics.py", 'sys.modules["torch"] = None  #',
           "pass  #", ("tests/training/test_metrics.py",),
           "the metric writer's tensorboardX import pulls in torch (seconds of every run's start)"),
    # --- cnnjax/training/checkpoint.py
    Mutant("restore-oldest-first", CHECKPOINT, "sorted(self.latest.all_steps(), reverse=True)",
           "sorted(self.latest.all_steps())", T_RESUME, "resume from the oldest checkpoint kept"),
    Mutant("identity-not-checked", CHECKPOINT, "if saved != identity:", "if False:",
           T_RESUME, "a checkpoint of another set-up is resumed"),
    Mutant("best-keeps-worst", CHECKPOINT, 'best_mode="max"', 'best_mode="min"', T_RESUME,
           "the best checkpoint is the one with the lowest validation accuracy"),
    Mutant("digest-not-verified-on-resume", CHECKPOINT, "verify_digest(step, restored.state, data)", "None",
           (T_DAMAGED,), "a resumed checkpoint's arrays are not checked against their digest"),
    Mutant("digest-not-verified-for-init-from", CHECKPOINT, "        verify_digest(step, tree, data)\n", "",
           ("tests/training/test_reliability.py::test_init_from_a_damaged_workdir_is_refused",),
           "init_from loads another run's checkpoint without checking its digest"),
    # --- cnnjax/training/train.py
    Mutant("resume-start-batch-0", TRAIN, 'epoch=data["epoch"], batch=data["batch"],',
           'epoch=data["epoch"], batch=0,', T_RESUME, "a resumed run restarts its epoch at batch 0",
           alternatives=(('epoch, start_batch = data["epoch"], data["batch"]', 'epoch, start_batch = data["epoch"], 0'),)),
    Mutant("resume-sums-reset", TRAIN, 'sums={k: jnp.asarray(v, zeros[k].dtype) for k, v in data["sums"].items()},',
           "sums=new_train_sums(),", T_RESUME, "a resumed run forgets the epoch's running train sums",
           alternatives=(('sums = {k: jnp.asarray(v, new_train_sums()[k].dtype) for k, v in data["sums"].items()}',
                          "sums = new_train_sums()"),)),
    Mutant("identity-ignores-model-kwargs", IDENTITY, "if field in RESULT_NEUTRAL_FIELDS:",
           'if field in RESULT_NEUTRAL_FIELDS or field.startswith("model.kwargs"):', T_RESUME,
           "the run identity ignores model.kwargs (conv=standard and conv=dilated:2 ResNet-20 match)"),
    Mutant("loop-drops-label-smoothing", TRAIN, 'label_smoothing=float(config.label_smoothing)',
           "label_smoothing=0.0", T_LOOP, "train_and_evaluate never passes label_smoothing to the step",
           alternatives=(('label_smoothing=float(config.get("label_smoothing", 0.0))', "label_smoothing=0.0"),)),
    Mutant("loop-drops-augmentation", TRAIN, "augment_fn=run.augment_fn, ema_decay", "augment_fn=None, ema_decay",
           T_LOOP, "train_and_evaluate never augments",
           alternatives=(("augment_fn=augment_fn, ema_decay", "augment_fn=None, ema_decay"),)),
    Mutant("loop-drops-ema-decay", TRAIN, 'ema_decay=float(config.ema_decay)', "ema_decay=0.0",
           T_LOOP, "the EMA copies the weights at every step",
           alternatives=(('ema_decay=float(config.get("ema_decay", 0.0))', "ema_decay=0.0"),)),
    Mutant("checkpoint-position-off-by-one", TRAIN, "p.batch = i + 1",
           "p.batch = i", T_RESUME,
           "a mid-epoch checkpoint records the batch it has just trained on",
           alternatives=(("save_checkpoint(checkpoints, state, sums, epoch, i + 1, history",
                          "save_checkpoint(checkpoints, state, sums, epoch, i, history"),)),
    Mutant("epoch-not-reshuffled", TRAIN, "seed=run.seed, epoch=p.epoch,", "seed=run.seed, epoch=0,", T_LOOP,
           "every epoch trains on the same order",
           alternatives=(("seed=config.seed, epoch=epoch,", "seed=config.seed, epoch=0,"),)),
    Mutant("eval-uses-ema-always", TRAIN, 'eval_with_ema=bool(config.eval_with_ema)', "eval_with_ema=True",
           ("tests/training/test_errors_and_freezing.py::test_without_eval_with_ema_the_trained_weights_are_evaluated",),
           "evaluation always uses the EMA weights",
           alternatives=(('use_ema=bool(config.get("eval_with_ema", False))', "use_ema=True"),)),
)


def export(rev: str, dest: str) -> None:
    """Copy revision ``rev`` of the repository (or the working tree for ``WORKTREE``) into ``dest``."""
    os.makedirs(dest)
    if rev == "WORKTREE":
        files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                               check=True, capture_output=True).stdout.decode().split("\0")
        for f in filter(None, files):
            src = os.path.join(REPO_ROOT, f)
            if os.path.isfile(src):
                os.makedirs(os.path.dirname(os.path.join(dest, f)), exist_ok=True)
                shutil.copy2(src, os.path.join(dest, f))
        return
    archive = subprocess.run(["git", "archive", rev], cwd=REPO_ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)


def check_patterns(root: str, mutants) -> list[str]:
    """The ids of mutants whose pattern does not occur exactly ``count`` times in ``root`` (stale)."""
    stale = []
    for m in mutants:
        path = os.path.join(root, m.path)
        text = open(path).read() if os.path.exists(path) else ""
        if m.substitution(text) is None:
            stale.append(f"{m.id}: {m.path} has {text.count(m.pattern)} occurrences of {m.pattern!r}, "
                         f"expected {m.count}")
    return stale


def run_tests(root: str, tests, timeout: float, stop_at_first: bool = True) -> tuple[str, float, str]:
    """Run the default tests ``tests`` in the copy ``root``: (``passed``/``failed``/``timeout``, seconds, the
    output's tail, or its ``FAILED``/``ERROR`` lines when not ``stop_at_first``)."""
    env = {**os.environ, "PYTHONPATH": root, "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "-m", "not slow", *tests]
    if stop_at_first:
        cmd.insert(3, "-x")
    start = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start, ""
    lines = (r.stdout + r.stderr).strip().splitlines()
    tail = lines[-15:] if stop_at_first else [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return ("passed" if r.returncode == 0 else "failed"), time.perf_counter() - start, "\n".join(tail)


def first_failure(tail: str) -> str:
    for line in tail.splitlines():
        if line.startswith("FAILED") or line.startswith("ERROR"):
            return line.split(" - ")[0].removeprefix("FAILED ").removeprefix("ERROR ")
    return ""


def mutate_and_run(root: str, m: Mutant, timeout: float) -> dict:
    path = os.path.join(root, m.path)
    original = open(path).read()
    pattern, replacement = m.substitution(original)
    try:
        with open(path, "w") as f:
            f.write(original.replace(pattern, replacement))
        outcome, seconds, tail = run_tests(root, m.tests, timeout)
    finally:
        with open(path, "w") as f:
            f.write(original)
    status = {"passed": "SURVIVED", "failed": "killed", "timeout": "killed (timeout)"}[outcome]
    return {"id": m.id, "path": m.path, "what": m.what, "status": status, "seconds": round(seconds, 1),
            "caught_by": first_failure(tail) if outcome == "failed" else "", "equivalent": m.equivalent,
            "tail": tail if outcome != "failed" else ""}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD", help="git revision to mutate, or WORKTREE (default HEAD)")
    parser.add_argument("--only", action="append", default=[], help="run the mutants whose id starts with this (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at the same time (one copy each)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant's test run")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-clean-check", action="store_true",
                        help="skip running the tests unmutated first (only when they were just run green on --rev)")
    parser.add_argument("--json", default="", help="write the results to this file")
    args = parser.parse_args(argv)

    mutants = [m for m in MUTANTS if not args.only or any(m.id.startswith(s) for s in args.only)]
    if args.list:
        for m in mutants:
            print(f"{m.id:40s} {m.path:32s} {' '.join(m.tests)}")
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still removes its copies
    tmp = tempfile.mkdtemp(prefix="cnnjax-mutants-")
    try:
        roots = [os.path.join(tmp, f"copy{j}") for j in range(max(1, args.jobs))]
        for root in roots:
            export(args.rev, root)
        probe = subprocess.run([sys.executable, "-c", "import cnnjax; print(cnnjax.__file__)"], cwd=roots[0],
                               env={**os.environ, "PYTHONPATH": roots[0]}, capture_output=True, text=True)
        if not probe.stdout.startswith(roots[0]):
            print(f"error: the copy does not import its own cnnjax ({probe.stdout.strip()} {probe.stderr[-300:]})")
            return 2
        stale = check_patterns(roots[0], mutants)
        for line in stale:
            print("STALE", line)
        stale_ids = {s.split(":")[0] for s in stale}
        mutants = [m for m in mutants if m.id not in stale_ids]

        test_sets = sorted({m.tests for m in mutants})
        files = {t for ts in test_sets for t in ts if "::" not in t}
        every_test = sorted({t for ts in test_sets for t in ts if t.split("::")[0] not in files or "::" not in t})
        print(f"{len(mutants)} mutants, {len(test_sets)} test sets; running their {len(every_test)} test files/ids on "
              "the unmutated code ...", flush=True)
        outcome, seconds, failures = ("passed", 0.0, "") if args.no_clean_check else run_tests(
            roots[0], every_test, 3 * args.timeout, stop_at_first=False)
        failed = [line.split(" - ")[0].split()[1] for line in failures.splitlines()
                  if line.startswith(("FAILED", "ERROR"))]
        if outcome == "timeout":
            print("error: the unmutated tests timed out")
            return 2
        broken = {ts for ts in test_sets if any(f.startswith(t) for f in failed for t in ts)}
        if outcome != "passed" and not broken:
            print(f"error: the unmutated tests failed\n{failures}")
            return 2
        for ts in broken:
            print(f"BROKEN test set {' '.join(ts)}: fails on the unmutated code")
        print("unmutated: not run (--no-clean-check)" if args.no_clean_check else
              f"unmutated: {outcome} in {seconds:.0f} s", flush=True)
        runnable = [m for m in mutants if m.tests not in broken]

        results = []
        free = list(roots)

        def work(m):
            root = free.pop()
            try:
                return mutate_and_run(root, m, args.timeout)
            finally:
                free.append(root)

        with concurrent.futures.ThreadPoolExecutor(len(roots)) as pool:
            for r in pool.map(work, runnable):
                results.append(r)
                print(f"{r['status']:17s} {r['id']:40s} {r['seconds']:6.1f} s  {r['caught_by']}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    killed = [r for r in results if r["status"].startswith("killed")]
    survived = [r for r in results if r["status"] == "SURVIVED"]
    print(f"\n{len(results)} mutants run: {len(killed)} killed, {len(survived)} survived"
          f" ({len(survived) / max(len(results), 1):.0%}); {len(stale)} stale; {len(broken)} broken test sets")
    for r in survived:
        print(f"SURVIVED {r['id']} ({r['path']}): {r['what']}" + (f" [equivalent: {r['equivalent']}]"
                                                                   if r["equivalent"] else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rev": args.rev, "results": results, "stale": stale,
                       "broken": [list(ts) for ts in broken]}, f, indent=1)
    behaviour_survivors = [r for r in survived if not r["equivalent"]]
    return 1 if (stale or broken or behaviour_survivors) else 0


if __name__ == "__main__":
    sys.exit(main())
