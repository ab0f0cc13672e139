"""``train_and_evaluate(config, workdir)``: the training loop, checkpoints, evaluation and the summary.

Data flow: config -> data source -> grain batches (uint8 NHWC, this process's shard) -> global arrays
sharded over the mesh's ``data`` axis -> jitted, donated step -> metrics.jsonl / TensorBoard /
checkpoints / summary.json in the workdir. A restarted run resumes from the newest readable checkpoint,
at the exact batch where it stopped, and ends with the same numbers as an uninterrupted run.

Order of a start (see README "Reliability"): check the config's values; a workdir holding a finished run of
the same config returns its summary untouched, one of another config is refused (``run_identity``); load
the data set (labels checked) and build the model; only then create the workdir, take its lock (one
writer), record ``config.json`` and train. A refused start writes nothing. SIGINT/SIGTERM save a
checkpoint at the current step and raise ``TrainingInterrupted``; rerunning resumes bitwise exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from cnnjax.data.augment import make_augmentation
from cnnjax.data.run_input import RunInput
from cnnjax.data.sources import get_dataset
from cnnjax.models import get_model
from cnnjax.models.common import count_params
from cnnjax.training import mesh as mesh_lib
from cnnjax.training.checkpoint import Checkpoints, abstract_tree
from cnnjax.training.config_checks import check_config, check_dataset
from cnnjax.training.executable_cache import cached_jit
from cnnjax.training.metrics import MetricWriter, to_python, write_json
from cnnjax.training.optimizers import freeze, make_optimizer
from cnnjax.training.pretrained import load_pretrained
from cnnjax.training.run_identity import (
    CONFIG_FILE,
    SUMMARY_FILE,
    ConfigMismatchError,
    check_same_run,
    config_differences,
    finished_summary,
)
from cnnjax.training.state import TrainState
from cnnjax.training.steps import eval_step, new_train_sums, train_step_and_sum
from cnnjax.training.workdir_lock import WorkdirBusyError, WorkdirLock

__all__ = ["ConfigMismatchError", "NonFiniteLossError", "TrainingInterrupted", "WorkdirBusyError",
           "config_differences", "finished_summary", "train_and_evaluate"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped the run after a checkpoint at ``step`` was saved; rerunning resumes it."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum
        super().__init__(f"interrupted at step {step}; rerun the same command to resume")


class StopSignals:
    """While active, SIGINT and SIGTERM only set ``signum``; the loop saves a checkpoint and stops.

    A second signal stops at once (``KeyboardInterrupt``); an ignored signal stays ignored. Only in the main
    thread of a single-process run: in a ``jax.distributed`` run every process would have to agree on the
    step, so signals keep their default effect there (the run resumes from its last periodic checkpoint).
    """

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread() and jax.process_count() == 1:
            for s in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(s) is not signal.SIG_IGN:  # e.g. SIGINT of a shell's background job
                    self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            self.__exit__()
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


def prepare_workdir(workdir: str) -> str:
    """Create ``workdir`` if needed and check that it is writable; return its absolute path."""
    workdir = os.path.abspath(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_test.{jax.process_index()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise PermissionError(
            f"workdir={workdir!r} is not writable ({e.strerror}); choose another with --workdir=DIR"
        ) from e
    return workdir


def build_model(config, num_classes: int):
    """The model named by ``config.model.name`` with ``config.model.kwargs``; bf16 compute on request."""
    kwargs = dict(config.model.get("kwargs", {}) or {})
    precision = config.get("mixed_precision", "")
    if precision:
        if precision != "bfloat16":
            raise ValueError(f"mixed_precision={precision!r} is unknown; allowed: '' (float32), 'bfloat16'")
        kwargs["dtype"] = jnp.bfloat16
    return get_model(config.model.name, num_classes=num_classes, **kwargs)


#: XLA options of the one-off initialisation program on CPU: LLVM optimisation level 1 instead of 3. Its
#: ~300 random-number kernels (threefry rounds, truncated normals) compiled 2-3x faster (ResNet-20 5.4 -> 2.3 s,
#: LeNet-5 1.9 -> 0.7 s) into the same bits for every model of the zoo (tested); it runs once, so its own speed
#: does not matter. The train and eval steps keep XLA's defaults: at level 1 or 2 their steps ran slower.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


#: Config fields that never reach a compiled program (the seed is the programs' argument; the rest is host-side):
#: left out of :func:`program_key`, so that runs differing only in them (a sweep's seeds) share programs.
HOST_ONLY_FIELDS = ("seed", "init_from", "progress_bar", "tensorboard", "checkpoint_every_steps", "checkpoint_keep")


def program_key(config, num_classes: int, image_shape, steps_per_epoch: int) -> dict:
    """What the run's compiled programs close over, for ``executable_cache.cached_jit``: every config field
    but :data:`HOST_ONLY_FIELDS`, and what the data set adds (classes, image shape, steps per epoch: the
    learning-rate schedule's length)."""
    fields = {k: v for k, v in config.to_dict().items() if k not in HOST_ONLY_FIELDS}
    return {"config": fields, "num_classes": int(num_classes), "image_shape": [int(n) for n in image_shape],
            "steps_per_epoch": int(steps_per_epoch)}


def create_train_state(config, model, image_shape, total_steps: int, steps_per_epoch: int = 1,
                       trainable_mask=None, *, cache_key: dict | None = None) -> TrainState:
    """Initialise parameters from ``config.seed`` (float32) and build the optimizer: the keys, the model's
    variables and the optimizer state come out of one program, not one per array (on CPU compiled with
    :data:`INIT_COMPILER_OPTIONS`; other backends: XLA's defaults). With ``cache_key`` (what ``model`` and the
    optimizer are built from, e.g. :func:`program_key`) that program goes through ``executable_cache``, as the
    program that leads a run (the run's step and evaluation programs are preloaded while it loads)."""
    tx = make_optimizer(config.optimizer, total_steps, steps_per_epoch)
    if trainable_mask is not None:
        tx = freeze(tx, trainable_mask)

    def initial_arrays(rng):
        init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
        variables = model.init({"params": init_rng, "dropout": dropout_rng},
                               jnp.zeros((1, *image_shape), jnp.float32), train=False)
        return variables, tx.init(variables["params"]), state_rng

    options = INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
    if cache_key is None:
        init = jax.jit(initial_arrays, compiler_options=options)
    else:
        init = cached_jit(initial_arrays, compiler_options=options, name="create_train_state", leads=True, key={
            **cache_key, "image_shape": list(image_shape), "total_steps": int(total_steps),
            "steps_per_epoch": int(steps_per_epoch), "trainable_mask": trainable_mask})
    variables, opt_state, state_rng = init(jax.random.PRNGKey(config.seed))
    params = variables["params"]
    # A copy, not the same buffers: the train step donates the state, and a buffer may be donated only once.
    ema = jax.tree.map(jnp.copy, params) if float(config.get("ema_decay", 0.0)) > 0 else None
    return TrainState(
        step=jnp.asarray(0, jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=opt_state,
        rng=state_rng,
        ema_params=ema,
        apply_fn=model.apply,
        tx=tx,
    )


def checkpoint_identity(config, state, image_shape, num_classes: int) -> dict:
    """What a checkpoint must match to be resumed: the model, its size and the state's tree structure."""
    structure = str(jax.tree_util.tree_structure(state.checkpoint_tree()))
    return {"model": config.model.name, "num_params": count_params(state.params), "image_shape": list(image_shape),
            "num_classes": num_classes, "optimizer": config.optimizer.name,
            "state_structure": hashlib.sha256(structure.encode()).hexdigest()[:16]}


def trainable_mask_for(config, model, image_shape):
    """True for parameters that train, False under the subtrees named in ``config.frozen``; None if none."""
    frozen = tuple(config.get("frozen", ()) or ())
    if not frozen:
        return None
    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                            jnp.zeros((1, *image_shape), jnp.float32))["params"]
    unknown = sorted(set(frozen) - set(shapes))
    if unknown:
        raise ValueError(f"frozen={frozen!r}: {unknown} are not parameter subtrees of {config.model.name}; "
                         f"available: {sorted(shapes)}")
    return {k: jax.tree_util.tree_map(lambda _, t=k not in frozen: t, v) for k, v in shapes.items()}


def evaluate(eval_fn, state, batches, mesh) -> dict:
    """Loss and top-k accuracy (each ``k`` that ``eval_fn`` counts) over masked ``batches`` (``RunInput.eval_batches``)."""
    totals = None
    for batch in batches:
        out = eval_fn(state, mesh_lib.shard_batch(batch, mesh))
        totals = out if totals is None else jax.tree_util.tree_map(jnp.add, totals, out)
    totals = jax.device_get(totals)
    count = float(totals["count"])
    result = {"loss": float(totals["loss_sum"]) / count, "count": int(count)}
    for k in sorted(int(key[len("correct_top"):]) for key in totals if key.startswith("correct_top")):
        result["accuracy" if k == 1 else f"top{k}_accuracy"] = float(totals[f"correct_top{k}"]) / count
    return result


def _make_augment_fn(config):
    return make_augmentation(config.augment)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What a run reads from its config and data set, once, before the workdir is touched."""

    workdir: str
    seed: int
    num_epochs: int
    batch_size: int  # global, over every process
    steps_per_epoch: int
    checkpoint_every_steps: int  # 0: epoch ends only
    checkpoint_keep: int
    progress_bar: bool
    tensorboard: bool
    loss: str  # a key of steps.LOSSES
    label_smoothing: float
    ema_decay: float
    eval_with_ema: bool
    augment_fn: Callable | None
    top_k: tuple[int, ...]
    identity: dict  # what a checkpoint must match to be resumed
    program_key: dict  # what the compiled step and eval programs close over (executable_cache)
    num_params: int
    model_name: str
    dataset_name: str

    @property
    def lead(self) -> bool:
        return jax.process_index() == 0


@dataclasses.dataclass
class Progress:
    """Where the loop stands in this (re)start; a checkpoint stores epoch, batch, sums and history."""

    state: TrainState
    sums: dict  # the epoch's running train sums, on the device
    epoch: int = 0  # the epoch being trained
    batch: int = 0  # the next batch of that epoch
    history: dict = dataclasses.field(default_factory=lambda: {
        "train_time_s": 0.0, "images_seen": 0, "best_validation_accuracy": None})
    started: float = dataclasses.field(default_factory=time.perf_counter)
    first_step_s: float | None = None  # data loading + compilation + one step


@dataclasses.dataclass(frozen=True)
class Loop:
    """The objects one run's loop works with."""

    input: RunInput  # the data set, its batch sizes and decoding workers
    mesh: jax.sharding.Mesh
    step_fn: Callable  # (state, sums, batch) -> (state, sums, metrics), jitted, donating state and sums
    eval_fn: Callable  # (state, batch) -> masked sums, jitted
    writer: MetricWriter
    checkpoints: Checkpoints
    stop: StopSignals


def train_and_evaluate(config, workdir: str) -> dict:
    """Train ``config.model`` on ``config.dataset``; write config, metrics, checkpoints, summary to ``workdir``.

    Returns the summary (also in ``workdir/summary.json``). A workdir that already holds the finished run
    of this config is left untouched and its saved summary returned. Raises ``ConfigMismatchError`` for a
    workdir of another config, ``WorkdirBusyError`` while another process writes it,
    ``TrainingInterrupted`` after SIGINT/SIGTERM (a checkpoint at the current step is saved first).
    """
    workdir = os.path.abspath(workdir)
    check_config(config)
    done = _finished_run(config, workdir, "this run is already finished; nothing to do. Summary in")
    if done is not None:
        return done
    # Everything that can fail on the config or the data fails here, before the workdir is touched.
    dataset = get_dataset(config.dataset)
    check_dataset(config, dataset)
    mesh = mesh_lib.make_mesh()
    run_input = RunInput.from_config(config, dataset)
    run, state = describe_run(config, workdir, run_input, mesh)

    prepare_workdir(workdir)
    lock = _lock_workdir(workdir)
    try:
        # Checked again under the lock: another process may have finished or started this workdir meanwhile.
        done = _finished_run(config, workdir, "this run was finished meanwhile; summary in")
        if done is not None:
            return done
        if run.lead and not check_same_run(config, workdir):
            write_json(os.path.join(workdir, CONFIG_FILE), config.to_dict())
        with StopSignals() as stop:
            return _train(run, run_input, mesh, state, stop)
    finally:
        lock.release()


def _finished_run(config, workdir: str, message: str) -> dict | None:
    """The saved summary if ``workdir`` holds the finished run of ``config`` (printing ``message``), else None."""
    done = finished_summary(config, workdir)
    if done is not None and jax.process_index() == 0:
        print(f"{message} {os.path.join(workdir, SUMMARY_FILE)}", flush=True)
    return done


def describe_run(config, workdir: str, run_input: RunInput, mesh) -> tuple[RunSpec, TrainState]:
    """Read ``config`` once: the run's description and its initial (or pretrained) state."""
    mesh_lib.check_batch_size(run_input.batch_size, mesh)
    mesh_lib.check_batch_size(run_input.eval_batch_size, mesh, "eval_batch_size")
    dataset, steps = run_input.dataset, run_input.steps_per_epoch
    model = build_model(config, dataset.num_classes)
    augment_fn = _make_augment_fn(config)
    image_shape = tuple(dataset.image_shape)
    trainable_mask = trainable_mask_for(config, model, image_shape)
    key = program_key(config, dataset.num_classes, image_shape, steps)
    state = create_train_state(config, model, image_shape, steps * int(config.num_epochs), steps, trainable_mask,
                               cache_key=key)
    if config.init_from:
        state = load_pretrained(state, config.init_from)
    run = RunSpec(
        workdir=workdir, seed=int(config.seed), num_epochs=int(config.num_epochs), batch_size=run_input.batch_size,
        steps_per_epoch=steps,
        checkpoint_every_steps=int(config.checkpoint_every_steps), checkpoint_keep=int(config.checkpoint_keep),
        progress_bar=bool(config.progress_bar), tensorboard=bool(config.tensorboard),
        loss=config.loss, label_smoothing=float(config.label_smoothing), ema_decay=float(config.ema_decay),
        eval_with_ema=bool(config.eval_with_ema), augment_fn=augment_fn,
        top_k=(1, 5) if dataset.num_classes > 10 else (1,),
        identity=checkpoint_identity(config, state, image_shape, dataset.num_classes), program_key=key,
        num_params=count_params(state.params), model_name=config.model.name, dataset_name=config.dataset.name)
    return run, state


def _lock_workdir(workdir: str) -> WorkdirLock:
    """Take this process's lock of ``workdir``; in a multi-process run all processes take theirs or none."""
    lock, busy = WorkdirLock(workdir, jax.process_index()), None
    try:
        lock.acquire()
    except WorkdirBusyError as e:
        busy = e
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        held = multihost_utils.process_allgather(np.asarray(busy is None, np.int32))
        if busy is None and not np.all(held):
            lock.release()
            busy = WorkdirBusyError(f"workdir {workdir} is in use by another run (another process of this run "
                                    "could not take its lock); wait for it to finish, or use another --workdir")
    if busy is not None:
        raise busy
    return lock


def _train(run: RunSpec, run_input: RunInput, mesh, state, stop: StopSignals) -> dict:
    """Resume from the newest verified checkpoint (if any), train every epoch left, test, summarise."""
    checkpoints = Checkpoints(run.workdir, keep=run.checkpoint_keep)
    writer = None
    try:
        # (Before the metric writer exists, so a checkpoint of another set-up is refused without a new file.)
        restored = checkpoints.restore_latest(abstract_tree(state.checkpoint_tree()), run.identity)
        writer = MetricWriter(run.workdir, tensorboard=run.tensorboard, enabled=run.lead)
        progress = _resume(run, state, restored, writer)
        progress.state = mesh_lib.replicate(progress.state, mesh)
        progress.sums = mesh_lib.replicate(progress.sums, mesh)
        step_fn = cached_jit(functools.partial(train_step_and_sum, loss=run.loss, label_smoothing=run.label_smoothing,
                                               augment_fn=run.augment_fn, ema_decay=run.ema_decay),
                             key=run.program_key, donate_argnums=(0, 1))
        eval_fn = cached_jit(functools.partial(eval_step, loss=run.loss, use_ema=run.eval_with_ema, top_k=run.top_k),
                             key=run.program_key)
        loop = Loop(run_input, mesh, step_fn, eval_fn, writer, checkpoints, stop)
        progress.started = time.perf_counter()
        while progress.epoch < run.num_epochs:
            _train_epoch(run, loop, progress)
            _end_epoch(run, loop, progress)
        return _summarise(run, loop, progress)
    finally:
        checkpoints.close()
        if writer is not None:
            writer.close()


def _resume(run: RunSpec, state, restored, writer: MetricWriter) -> Progress:
    """The loop's starting point: the restored checkpoint's state, position and sums, or the beginning."""
    if restored is None:
        return Progress(state=state, sums=new_train_sums())
    tree, data = restored
    zeros = new_train_sums()
    progress = Progress(state=state.from_checkpoint_tree(tree), epoch=data["epoch"], batch=data["batch"],
                        sums={k: jnp.asarray(v, zeros[k].dtype) for k, v in data["sums"].items()},
                        history=data["history"])
    writer.truncate_after(int(progress.state.step))
    if run.lead:
        print(f"resumed from the checkpoint at step {int(progress.state.step)} (epoch {progress.epoch + 1}, "
              f"batch {progress.batch})", flush=True)
    return progress


def check_finite(sums, checkpoints: Checkpoints) -> None:
    """Raise ``NonFiniteLossError`` naming the first step whose loss was NaN or Inf."""
    bad = int(jax.device_get(sums["first_nonfinite_step"]))
    if bad >= 0:
        last = checkpoints.latest.latest_step()
        raise NonFiniteLossError(
            f"the training loss became NaN or Inf at step {bad}; stopping. "
            + (f"The last good checkpoint (step {last}) is kept in {checkpoints.latest.directory}."
               if last is not None else "No checkpoint had been written yet.")
        )


def save_checkpoint(checkpoints: Checkpoints, progress: Progress, identity: dict) -> None:
    """Save the state and where the data iterator stands (epoch, next batch), after a finiteness check."""
    check_finite(progress.sums, checkpoints)
    data = to_python({"epoch": progress.epoch, "batch": progress.batch, "sums": jax.device_get(progress.sums),
                      "history": progress.history, "identity": identity})
    checkpoints.save(int(jax.device_get(progress.state.step)), progress.state.checkpoint_tree(), data)


def _count_training_time(run: RunSpec, progress: Progress, since: float, steps: int) -> None:
    progress.history["train_time_s"] += time.perf_counter() - since
    progress.history["images_seen"] += steps * run.batch_size


def _train_epoch(run: RunSpec, loop: Loop, p: Progress) -> None:
    """Train the rest of epoch ``p.epoch`` from batch ``p.batch``; periodic checkpoints; stop on a signal."""
    steps = run.steps_per_epoch
    bar = tqdm(total=steps, initial=p.batch, desc=f"epoch {p.epoch + 1}/{run.num_epochs}", unit="step",
               leave=False, disable=not (run.lead and run.progress_bar))
    t0, done_here = time.perf_counter(), 0
    batches = loop.input.train_batches(seed=run.seed, epoch=p.epoch, start_batch=p.batch)
    for i, batch in enumerate(batches, start=p.batch):
        p.state, p.sums, metrics = loop.step_fn(p.state, p.sums, mesh_lib.shard_batch(batch, loop.mesh))
        p.batch = i + 1
        if p.first_step_s is None:  # the first step compiles: time it apart from the throughput
            jax.block_until_ready(p.state)
            p.first_step_s = time.perf_counter() - p.started
            t0 = time.perf_counter()
        else:
            done_here += 1
        stopping = loop.stop.signum is not None and i + 1 < steps  # at an epoch end: after its evaluation
        every = run.checkpoint_every_steps
        if (every and (i + 1) % every == 0 and i + 1 < steps) or stopping:
            _count_training_time(run, p, t0, done_here)
            t0, done_here = time.perf_counter(), 0
            save_checkpoint(loop.checkpoints, p, run.identity)
            if stopping:
                bar.close()
                raise TrainingInterrupted(int(jax.device_get(p.state.step)), loop.stop.signum)
        if i % 20 == 0 or i == steps - 1:
            bar.set_postfix(loss=f"{float(metrics['loss']):.4f}",
                            img_s=f"{done_here * run.batch_size / max(time.perf_counter() - t0, 1e-9):,.0f}")
        bar.update(1)
    jax.block_until_ready(p.state)
    _count_training_time(run, p, t0, done_here)
    bar.close()


def _end_epoch(run: RunSpec, loop: Loop, p: Progress) -> None:
    """Log the epoch's train metrics, evaluate on the validation split, checkpoint; stop on a signal."""
    check_finite(p.sums, loop.checkpoints)
    host_sums = jax.device_get(p.sums)
    count = max(int(host_sums["count"]), 1)
    step, epoch = int(p.state.step), p.epoch + 1
    train = {"epoch": epoch, "loss": float(host_sums["loss"]) / count, "accuracy": float(host_sums["accuracy"]) / count}
    loop.writer.write(step, "train", train)
    line = f"epoch {epoch}/{run.num_epochs}: train loss {train['loss']:.4f} acc {train['accuracy']:.4f}"
    p.sums = mesh_lib.replicate(new_train_sums(), loop.mesh)
    p.epoch, p.batch = epoch, 0
    val = None
    if loop.input.dataset.validation is not None:
        val = _evaluate_split(loop, p.state, loop.input.dataset.validation)
        loop.writer.write(step, "validation", {"epoch": epoch, **val})
        best = p.history["best_validation_accuracy"]
        p.history["best_validation_accuracy"] = val["accuracy"] if best is None else max(best, val["accuracy"])
        line += f", validation acc {val['accuracy']:.4f}"
    save_checkpoint(loop.checkpoints, p, run.identity)
    if val is not None:
        loop.checkpoints.save_best(step, p.state.checkpoint_tree(),
                                   to_python({"epoch": epoch, "identity": run.identity, "validation": val}),
                                   val["accuracy"])
    if run.lead:
        rate = p.history["images_seen"] / max(p.history["train_time_s"], 1e-9)
        print(line + f" ({rate:,.0f} images/s)", flush=True)
    if loop.stop.signum is not None:
        raise TrainingInterrupted(int(jax.device_get(p.state.step)), loop.stop.signum)


def _evaluate_split(loop: Loop, state, source) -> dict:
    return evaluate(loop.eval_fn, state, loop.input.eval_batches(source), loop.mesh)


def _summarise(run: RunSpec, loop: Loop, p: Progress) -> dict:
    """Evaluate on the test split; write and return the summary."""
    test = _evaluate_split(loop, p.state, loop.input.dataset.test)
    loop.writer.write(int(p.state.step), "test", test)
    summary = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_count": test["count"],
        "best_validation_accuracy": p.history["best_validation_accuracy"],
        "num_params": run.num_params,
        "epochs": run.num_epochs,
        "steps": int(jax.device_get(p.state.step)),
        "wall_time_s": time.perf_counter() - p.started,  # this process's time since it (re)started
        "train_time_s": p.history["train_time_s"],
        "train_images_per_s": p.history["images_seen"] / max(p.history["train_time_s"], 1e-9),
        "first_step_s": p.first_step_s,  # data loading + compilation + one step, in this (re)start
        "model": run.model_name,
        "dataset": run.dataset_name,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "processes": jax.process_count(),
    }
    summary.update({f"test_{k}": v for k, v in test.items() if k.startswith("top")})
    if run.lead:
        path = os.path.join(run.workdir, SUMMARY_FILE)
        write_json(path, summary)
        print(f"test accuracy {test['accuracy']:.4f} on {test['count']} images; {run.num_params:,} parameters; "
              f"{summary['wall_time_s']:.1f} s; summary in {path}", flush=True)
    return summary
