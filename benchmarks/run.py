"""cnnjax against PyTorch, side by side in one process: conv variants, LeNet-5 / ResNet-20 training, compile time.

    python -m benchmarks.run                 # everything (about 10 minutes on 2 busy CPU cores)
    python -m benchmarks.run --quick         # fewer shapes and repeats (under ~3 minutes)
    python -m benchmarks.run --only lenet5   # one section: conv, lenet5, resnet20, compile, deform_conv, data_pipeline
    taskset -c 1 python -m benchmarks.run --quick --only lenet5   # one core each: robust on a loaded machine

On a shared, oversubscribed machine PyTorch's 2 OpenMP threads can run 10-30x slower than usual (they
spin-wait for a core another process holds), which makes 2-core ratios meaningless; compare the load
average in ``machine.json`` and prefer the one-core (``taskset``) figures then: every contestant gets
``len(os.sched_getaffinity(0))`` threads.

Every number is a median over interleaved repeats (each repeat times every contestant once, in a rotating
order), because the machines are shared and noisy. ``ratio`` = torch time / cnnjax time = cnnjax speed /
torch speed: > 1 means cnnjax is faster. Results go to ``benchmarks/results/<section>.json`` (each with the
machine it ran on) plus ``machine.json`` (the last run's start and end, load averages, failed sections; not
tracked by git). On a machine with a GPU, cnnjax runs on CUDA and is compared with PyTorch eager and
``torch.compile`` on the same GPU (this path has not been run on a GPU yet).

The cnnjax side is the real code: ``cnnjax.ops`` for the ops, and for training
``cnnjax.models.get_model`` + ``cnnjax.training.train.create_train_state`` + ``cnnjax.training.steps.train_step``
under ``jax.jit(donate_argnums=0)``. Rows marked ``proto:`` are the prototypes of ``benchmarks/lenet_fast.py``
(the same step with ``ops.conv`` dispatched to ``benchmarks/im2col.py`` formulations, and K steps per dispatch), which
measure changes proposed for cnnjax; each is timed in a round of its own with torch (its threads would
otherwise slow the other contestants), so its ratio is against that round's torch.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
import time
import traceback

import numpy as np

from benchmarks.harness import interleaved, machine_info, write_json
from experiments import process_defaults

process_defaults.apply_xla_defaults()  # before JAX starts; no compilation cache: compile times are measured

#: ResNet-20 rows with these conv variants in the blocks (``get_model("resnet20", conv=...)``), each against torch.
RESNET_VARIANTS = ("separable", "grouped:4")
SECTIONS = ("conv", "lenet5", "resnet20", "compile", "deform_conv", "data_pipeline")


# ----------------------------------------------------------------------------------------------- setup


def _torch():
    import torch

    return torch


def _devices():
    """(jax backend, torch device): 'gpu'/'cuda' when both see a GPU, else CPU."""
    import jax

    torch = _torch()
    gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
    return ("gpu" if gpu else "cpu"), ("cuda" if gpu else "cpu")


def _torch_sync(device):
    torch = _torch()

    def sync(value):
        if device == "cuda":
            torch.cuda.synchronize()
        return value

    return sync


def _fmt_table(title: str, rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Plain-text table: ``columns`` = (key, header, format)."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        line = []
        for key, _, fmt in columns:
            v = r.get(key)
            line.append("-" if v is None else (format(v, fmt) if fmt else str(v)))
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    out = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths))]
    out.append("  ".join("-" * w for w in widths))
    for c in cells[1:]:
        out.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths))))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ conv variants


def _conv_cases(quick: bool):
    """(name, x shape NHWC, params, cnnjax fn(x, *w), torch fn(x, *w), torch weight converter)."""
    import jax.numpy as jnp  # noqa: F401

    from benchmarks.im2col import conv_im2col
    from cnnjax import ops

    torch = _torch()
    F = torch.nn.functional
    cases = []

    def std(name, x, k, stride=1, padding="SAME", dilation=1, groups=1, tpad=None, im2col=False):
        kh, kw, ci, co = k

        def jfn(x, w, b, fn=ops.conv):
            return fn(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)

        def tfn(x, w, b):
            return F.conv2d(x, w, b, stride=stride, padding=tpad, dilation=dilation, groups=groups)

        params = {"w": (kh, kw, ci, co), "b": (co,)}
        cases.append((name, x, params, jfn, tfn))
        if im2col and not quick:
            cases.append((name.replace("conv2d", "conv2d[im2col]"), x, params,
                          functools.partial(jfn, fn=conv_im2col), tfn))

    std("conv2d 5x5 1->6 SAME (LeNet c1)", (128, 28, 28, 1), (5, 5, 1, 6), tpad=2, im2col=True)
    std("conv2d 5x5 6->16 VALID (LeNet c2)", (128, 14, 14, 6), (5, 5, 6, 16), padding="VALID", tpad=0, im2col=True)
    std("conv2d 3x3 16->16 SAME (ResNet-20 s1)", (128, 32, 32, 16), (3, 3, 16, 16), tpad=1, im2col=True)
    if not quick:
        std("conv2d 3x3 64->64 SAME", (32, 28, 28, 64), (3, 3, 64, 64), tpad=1, im2col=True)
    std("strided conv2d 3x3 s2 p1 16->32", (128, 32, 32, 16), (3, 3, 16, 32), stride=2, padding=1, tpad=1)
    std("dilated conv2d 3x3 d2 32->32", (32, 28, 28, 32), (3, 3, 32, 32), dilation=2, padding=2, tpad=2)

    # 1-D
    cases.append((
        "conv1d k5 16->32 SAME", (64, 1024, 16), {"w": (5, 16, 32), "b": (32,)},
        lambda x, w, b: ops.conv(x, w, b, padding="SAME"),
        lambda x, w, b: F.conv1d(x, w, b, padding=2),
    ))
    variants(cases, "", 32, 28, 64, quick=True)
    # the variants at the shapes of ResNet-style nets: 56x56 x 64 channels down to 7x7 x 256
    for n, size, channels in ((8, 56, 64), (8, 28, 128), (8, 14, 256), (8, 7, 256)):
        if not quick or size in (56, 14):
            variants(cases, f" ({size}x{size}, batch {n})", n, size, channels, quick=False)
    if hasattr(ops, "locally_connected"):
        # torch has no locally connected layer: its natural form is unfold + per-position einsum.
        def torch_lc(x, w, b):
            n = x.shape[0]
            cols = F.unfold(x, 3)  # (N, C*9, L)
            cols = cols.view(n, 8, 9, 12 * 12).permute(0, 3, 2, 1).reshape(n, 144, 72)  # (N, L, taps*C)
            y = torch.einsum("nlk,lko->nlo", cols, w) + b
            return y.view(n, 12, 12, 16).permute(0, 3, 1, 2)

        cases.append((
            "locally connected 3x3 8->16 (14x14)", (64, 14, 14, 8),
            {"w": (12, 12, 3, 3, 8, 16), "b": (12, 12, 16)},
            lambda x, w, b: ops.locally_connected(x, w, b, kernel_size=3),
            torch_lc,
        ))
    return cases


def variants(cases, suffix, n, size, c, quick):
    """Grouped (g = 4), depthwise, separable, transposed (stride 2, half the channels out), strided (stride 2,
    twice the channels out: a ResNet's downsampling) and dilated (d = 2) 3x3 convs on ``(n, size, size, c)``;
    ``quick``: the first four, as in the issue's table."""
    from cnnjax import ops

    F = _torch().nn.functional
    cases.append((
        f"grouped conv2d 3x3 g4 {c}->{c}{suffix}", (n, size, size, c), {"w": (3, 3, c // 4, c), "b": (c,)},
        lambda x, w, b: ops.conv(x, w, b, padding="SAME", groups=4),
        lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=4),
    ))
    cases.append((
        f"depthwise conv2d 3x3 {c}{suffix}", (n, size, size, c), {"w": (3, 3, c, 1), "b": (c,)},
        lambda x, w, b: ops.depthwise_conv(x, w, b, padding="SAME"),
        lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=c),
    ))
    c_sep = 2 * c if quick else c
    cases.append((
        f"separable conv2d 3x3 {c}->{c_sep}{suffix}", (n, size, size, c),
        {"dw": (3, 3, c, 1), "pw": (c, c_sep), "b": (c_sep,)},
        lambda x, dw, pw, b: ops.separable_conv(x, dw, pw, b, padding="SAME"),
        lambda x, dw, pw, b: F.conv2d(F.conv2d(x, dw, None, padding=1, groups=c), pw, b),
    ))
    half = max(1, size // 2)
    cases.append((
        f"transposed conv2d 3x3 s2 {c}->{c // 2}{suffix}", (n, half, half, c), {"w": (3, 3, c // 2, c), "b": (c // 2,)},
        lambda x, w, b: ops.conv_transpose(x, w, b, stride=2, padding=1, output_padding=1),
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
    ))
    if not quick:
        cases.append((
            f"strided conv2d 3x3 s2 {c}->{2 * c}{suffix}", (n, size, size, c), {"w": (3, 3, c, 2 * c), "b": (2 * c,)},
            lambda x, w, b: ops.conv(x, w, b, stride=2, padding=1),
            lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
        ))
        cases.append((
            f"dilated conv2d 3x3 d2 {c}->{c}{suffix}", (n, size, size, c), {"w": (3, 3, c, c), "b": (c,)},
            lambda x, w, b: ops.conv(x, w, b, padding=2, dilation=2),
            lambda x, w, b: F.conv2d(x, w, b, padding=2, dilation=2),
        ))


def _to_torch_param(name, arr, case_name, torch, device):
    """cnnjax layout -> torch layout for the conv weights (HWIO -> OIHW etc.)."""
    a = np.asarray(arr)
    if name == "b" and a.ndim == 3:  # locally connected bias (oh, ow, o) -> (L, o)
        a = a.reshape(-1, a.shape[-1])
    elif name == "w" and a.ndim == 6:  # locally connected (oh, ow, kh, kw, c, o) -> (L, taps * c, o)
        oh, ow, kh, kw, c, o = a.shape
        a = a.reshape(oh * ow, kh * kw * c, o)
    elif name == "w" and "transposed" in case_name:  # (kh, kw, C_out, C_in) -> torch (C_in, C_out, kh, kw)
        a = a.transpose(3, 2, 0, 1)
    elif name in ("w", "dw") and a.ndim == 4:  # HWIO -> OIHW (depthwise (kh, kw, C, 1) -> (C, 1, kh, kw))
        a = a.transpose(3, 2, 0, 1) if name == "w" and "depthwise" not in case_name else a.transpose(2, 3, 0, 1)
    elif name == "w" and a.ndim == 3:  # WIO -> OIW
        a = a.transpose(2, 1, 0)
    elif name == "pw":  # (C, K) -> (K, C, 1, 1)
        a = a.T[:, :, None, None]
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


def bench_conv(quick: bool, only_cases=None) -> list[dict]:
    """fwd and fwd+bwd of every conv case: cnnjax (as dispatched), its reference formulation (when a fast path
    serves the case) and torch, interleaved. ``only_cases``: substrings of the case names to keep."""
    import jax
    import jax.numpy as jnp

    from cnnjax.ops import fast

    torch = _torch()
    _, device = _devices()
    rng = np.random.default_rng(0)
    rows = []
    for name, x_shape, pshapes, jfn, tfn in _conv_cases(quick):
        if only_cases and not any(part in name for part in only_cases):
            continue
        x = rng.standard_normal(x_shape).astype(np.float32)
        params = {k: (rng.standard_normal(s) * 0.1).astype(np.float32) for k, s in pshapes.items()}
        jx, jp = jnp.asarray(x), [jnp.asarray(v) for v in params.values()]
        tx = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))).to(device)
        tp = [_to_torch_param(k, v, name, torch, device) for k, v in params.items()]
        # correctness guard: the two sides must compute the same thing
        want = np.moveaxis(tfn(tx, *tp).detach().cpu().numpy(), 1, -1)
        got = np.asarray(jfn(jx, *jp))
        err = float(np.max(np.abs(got - want)) / (np.max(np.abs(want)) + 1e-6))
        argnums = tuple(range(len(jp) + 1))
        # fwd+bwd: the forward and the vector-Jacobian product with a fixed random cotangent (a loss of
        # sum(y) has a constant cotangent of ones, which XLA folds into the backward pass and torch does not)
        cotangent = rng.standard_normal(want.shape).astype(np.float32)
        jct = jnp.asarray(cotangent)  # channels last, like ``want``; torch's is channels first
        tct = torch.from_numpy(np.ascontiguousarray(np.moveaxis(cotangent, -1, 1))).to(device)

        def loss(*a):
            return jnp.vdot(jfn(*a), jct)

        fwd = jax.jit(jfn)
        fwd_bwd = jax.jit(jax.grad(loss, argnums=argnums))
        with fast.reference_only():  # the reference formulation, traced (and compiled) here
            ref_fwd = jax.jit(lambda *a: jfn(*a)).lower(jx, *jp).compile()
            ref_fwd_bwd = jax.jit(jax.grad(lambda *a: loss(*a), argnums=argnums)).lower(jx, *jp).compile()
            ref_jaxpr = str(jax.make_jaxpr(lambda *a: jfn(*a))(jx, *jp))
        fast_path = str(jax.make_jaxpr(lambda *a: jfn(*a))(jx, *jp)) != ref_jaxpr
        txg = tx.clone().requires_grad_(True)
        tpg = [p.clone().requires_grad_(True) for p in tp]

        def t_fwd():
            with torch.no_grad():
                return tfn(tx, *tp)

        def t_fwd_bwd():
            for p in [txg, *tpg]:
                p.grad = None
            (tfn(txg, *tpg) * tct).sum().backward()
            return txg.grad

        sync = {"torch": _torch_sync(device)}
        for mode, jf, rf, tf in (("fwd", fwd, ref_fwd, t_fwd), ("fwd+bwd", fwd_bwd, ref_fwd_bwd, t_fwd_bwd)):
            contestants = {"cnnjax": functools.partial(jf, jx, *jp), "torch": tf}
            if fast_path:
                contestants["reference"] = functools.partial(rf, jx, *jp)
            res = interleaved(contestants, repeats=3 if quick else 9, number=1 if quick else 3,
                              warmup=1 if quick else 2, sync=sync, min_time=0.0 if quick else 0.05)
            cj, tt = res["cnnjax"]["median_s"], res["torch"]["median_s"]
            ref = res["reference"]["median_s"] if fast_path else cj
            per_repeat = [t / c for t, c in zip(res["torch"]["repeats_s"], res["cnnjax"]["repeats_s"])]
            rows.append({"case": name, "mode": mode, "cnnjax_ms": cj * 1e3, "torch_ms": tt * 1e3, "ratio": tt / cj,
                         "reference_ms": ref * 1e3, "reference_ratio": tt / ref, "fast_path": fast_path,
                         "ratio_min": min(per_repeat), "ratio_max": max(per_repeat),
                         "max_rel_err": err, "x_shape": list(x_shape), "raw": res})
            print(f"  {name:48s} {mode:8s} cnnjax {cj * 1e3:8.3f} ms  torch {tt * 1e3:8.3f} ms  ratio {tt / cj:5.2f}"
                  f"  (reference {ref * 1e3:8.3f} ms, ratio {tt / ref:5.2f}{'' if fast_path else ', same program'})"
                  f"  ratio per repeat {min(per_repeat):.2f}-{max(per_repeat):.2f}", flush=True)
    return rows


# --------------------------------------------------------------------------------------------- training


def _model_setup(name: str):
    """(image shape, config) for a model; the config only feeds ``create_train_state`` (Adam, lr 1e-3)."""
    import ml_collections

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.optimizer = ml_collections.ConfigDict({"name": "adam", "learning_rate": 1e-3, "schedule": "constant",
                                                  "weight_decay": 0.0})
    return ((28, 28, 1) if name == "lenet5" else (32, 32, 3)), config


def _jax_contestant(model_name: str, batch_size: int, k_steps: int = 1, fast_ops: bool | str = False,
                    unroll: bool = True, images=None, labels=None, conv: str = "standard"):
    """A cnnjax train-step contestant: ``(run() -> metrics, seconds to the first step, images per run())``.

    ``k_steps`` > 1 stacks K batches and runs K steps per dispatch (``lenet_fast.multi_step``).
    """
    import jax
    import jax.numpy as jnp

    from benchmarks.lenet_fast import jit_with_ops, multi_step
    from cnnjax.models import get_model
    from cnnjax.training.steps import train_step
    from cnnjax.training.train import create_train_state

    image_shape, config = _model_setup(model_name)
    model = get_model(model_name, num_classes=10, **({} if conv == "standard" else {"conv": conv}))
    state = create_train_state(config, model, image_shape, total_steps=10_000)
    if k_steps == 1:
        batch = {"image": jnp.asarray(images[0]), "label": jnp.asarray(labels[0])}

        def fn(s, b):
            return train_step(s, b)
    else:
        batch = {"image": jnp.asarray(images[:k_steps]), "label": jnp.asarray(labels[:k_steps])}

        def fn(s, b):
            return multi_step(train_step, s, b, unroll=unroll)

    step = jit_with_ops(fn, conv=fast_ops, donate_argnums=0)
    box = [state]
    t0 = time.perf_counter()
    box[0], m = step(box[0], batch)
    jax.block_until_ready((box[0], m))
    first = time.perf_counter() - t0

    def run():
        box[0], metrics = step(box[0], batch)
        return metrics

    return run, first, batch_size * k_steps


def _train_data(model_name: str, batch_size: int, k: int):
    image_shape, _ = _model_setup(model_name)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (k, batch_size, *image_shape), dtype=np.uint8)
    labels = rng.integers(0, 10, (k, batch_size)).astype(np.int32)
    return images, labels


def bench_train(model_name: str, quick: bool, batch_size: int = 128) -> list[dict]:
    """Images/s of the cnnjax train step (real, and the prototypes) against torch, interleaved."""
    from benchmarks.torch_models import TorchTrainer

    backend, device = _devices()
    lenet = model_name == "lenet5"
    k = 8
    images, labels = _train_data(model_name, batch_size, k)
    variants = {"cnnjax train_step": dict()}
    if lenet:
        variants["proto: 4 steps/dispatch"] = dict(k_steps=4)
        if not quick:
            variants["proto: 8 steps/dispatch"] = dict(k_steps=8)
            variants["proto: im2col conv"] = dict(fast_ops="im2col")
            variants["proto: 8 steps/dispatch (lax.scan)"] = dict(k_steps=8, unroll=False)
    contestants, per_call, first = {}, {}, {}
    for name, kw in variants.items():
        try:
            run, t_first, imgs = _jax_contestant(model_name, batch_size, images=images, labels=labels, **kw)
        except Exception as e:  # noqa: BLE001 - a broken prototype must not stop the benchmark
            print(f"  {name}: skipped ({type(e).__name__}: {e})", flush=True)
            continue
        contestants[name], per_call[name], first[name] = run, imgs, t_first
    torch_names = {"torch eager": False}
    if device == "cuda":
        torch_names["torch.compile"] = True
    syncs = {}
    for tname, compile_ in torch_names.items():
        trainer = TorchTrainer(model_name, images[0], labels[0], device=device, compile=compile_)
        t0 = time.perf_counter()
        _torch_sync(device)(trainer.step())
        first[tname] = time.perf_counter() - t0
        contestants[tname], per_call[tname], syncs[tname] = trainer.step, batch_size, _torch_sync(device)
    # cnnjax's step and torch are timed together; each prototype in a round of its own with torch again, so
    # that its worker threads (a K-step program keeps XLA's pool busy longer) do not slow the main pair.
    torch_group = {t: contestants[t] for t in torch_names}
    res, torch_ref = {}, {}
    for jax_name in [n for n in contestants if n not in torch_names]:
        r = interleaved({jax_name: contestants[jax_name], **torch_group}, repeats=5 if quick else 9,
                        number=2 if quick else 4, warmup=2, sync=syncs, min_time=0.15 if quick else 0.4)
        res[jax_name], torch_ref[jax_name] = r[jax_name], r["torch eager"]
        if jax_name == "cnnjax train_step":
            for t in torch_names:
                res[t], torch_ref[t] = r[t], r["torch eager"]
    # ResNet-20 with a conv variant in its blocks: each against the same variant in torch, a round per pair.
    for conv in (RESNET_VARIANTS if model_name == "resnet20" else ()):
        name, tname = f"cnnjax conv={conv}", f"torch eager conv={conv}"
        run, first[name], per_call[name] = _jax_contestant(model_name, batch_size, images=images, labels=labels,
                                                           conv=conv)
        trainer = TorchTrainer(model_name, images[0], labels[0], device=device, conv=conv)
        t0 = time.perf_counter()
        _torch_sync(device)(trainer.step())
        first[tname], per_call[tname] = time.perf_counter() - t0, batch_size
        r = interleaved({name: run, tname: trainer.step}, repeats=5 if quick else 9, number=2 if quick else 4,
                        warmup=2, sync={tname: _torch_sync(device)}, min_time=0.15 if quick else 0.4)
        res[name], torch_ref[name] = r[name], r[tname]
        res[tname], torch_ref[tname] = r[tname], r[tname]
    rows = []
    for name, r in res.items():
        ref = torch_ref[name]
        rate = per_call[name] / r["median_s"]
        best = per_call[name] / r["min_s"]
        rows.append({"contestant": name, "images_per_s": rate, "ms_per_step": 1e3 * r["median_s"] * batch_size
                     / per_call[name], "ratio_vs_torch": rate / (per_call["torch eager"] / ref["median_s"]),
                     "ratio_vs_torch_best": best / (per_call["torch eager"] / ref["min_s"]),
                     "ratio_cpu_time": (ref["cpu_median_s"] / per_call["torch eager"])
                     / (r["cpu_median_s"] / per_call[name]),
                     "first_step_s": first[name], "batch_size": batch_size, "backend": backend, "raw": r,
                     "torch_ms_per_step_same_round": 1e3 * ref["median_s"]})
    return rows


def bench_compile(quick: bool) -> list[dict]:
    """Seconds from a fresh ``jax.jit`` (trace + compile + run) to the first finished train step."""
    from benchmarks.torch_models import TorchTrainer

    _, device = _devices()
    rows = []
    for model_name in ("lenet5", "resnet20"):
        images, labels = _train_data(model_name, 128, 8)
        for name, kw in (("cnnjax train_step", {}), ("proto: 4 steps/dispatch", {"k_steps": 4})):
            if quick and (model_name == "resnet20" or "k_steps" in kw) and kw:
                continue
            try:
                _, first, _ = _jax_contestant(model_name, 128, images=images, labels=labels, **kw)
            except Exception as e:  # noqa: BLE001
                print(f"  {model_name} {name}: skipped ({type(e).__name__}: {e})", flush=True)
                continue
            rows.append({"model": model_name, "contestant": name, "first_step_s": first})
            print(f"  {model_name:9s} {name:40s} first step {first:6.2f} s", flush=True)
        trainer = TorchTrainer(model_name, images[0], labels[0], device=device)
        t0 = time.perf_counter()
        _torch_sync(device)(trainer.step())
        rows.append({"model": model_name, "contestant": "torch eager", "first_step_s": time.perf_counter() - t0})
    from benchmarks.first_step import cold_and_warm

    for row in cold_and_warm("resnet20"):  # fresh processes with the entry points' compilation cache
        rows.append({"model": "resnet20", "contestant": f"cnnjax, new process, {row['cache']}",
                     "first_step_s": row["first_step_s"], "to_first_step_s": row["to_first_step_s"],
                     "train_state_s": row["state_s"], "step_program": row["step_program"]})
        print(f"  resnet20  {rows[-1]['contestant']:40s} first step {row['first_step_s']:6.2f} s", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------- main


def _external(module_name: str, quick: bool):
    """Call ``benchmarks.<module_name>.run(quick)`` if another engineer's module exists."""
    try:
        mod = importlib.import_module(f"benchmarks.{module_name}")
    except ModuleNotFoundError as e:
        if e.name in (f"benchmarks.{module_name}",):
            print(f"  benchmarks/{module_name}.py is not there yet: skipped", flush=True)
            return None
        raise
    if not hasattr(mod, "run"):
        print(f"  benchmarks/{module_name}.py has no run(quick): skipped", flush=True)
        return None
    return mod.run(quick)


def _print_external(name, rows):
    if not rows:
        return
    if isinstance(rows, dict):
        rows = rows.get("rows", [rows])
    keys = [k for k in rows[0] if not isinstance(rows[0][k], (dict, list))][:9]
    print(_fmt_table(f"\n{name}", rows, [(k, k, ".4g" if isinstance(rows[0][k], float) else "") for k in keys]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes and repeats (< ~3 minutes)")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this section (repeatable)")
    parser.add_argument("--case", action="append", help="conv section: only the cases whose name contains this")
    args = parser.parse_args(argv)
    sections = args.only or list(SECTIONS)
    torch = _torch()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores < torch.get_num_threads():  # e.g. under `taskset -c 0`: more threads than cores collapse torch
        torch.set_num_threads(cores)
    backend, device = _devices()
    info = machine_info()
    info["cores_available"] = cores
    info.update({"command": "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:]),
                 "quick": args.quick, "torch_device": device, "cnnjax_backend": backend,
                 "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())})
    print(f"cnnjax (jax {info.get('jax')}, {backend}) vs torch {torch.__version__} ({device}, "
          f"{torch.get_num_threads()} threads) on {info.get('cpu')} x{info['cpu_count']}, "
          f"load {info.get('load_average')}", flush=True)
    t_start = time.perf_counter()
    failed = []

    def section(name, fn):
        print(f"\n== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            rows = fn()
        except Exception:  # noqa: BLE001 - report and go on with the other sections
            traceback.print_exc()
            failed.append(name)
            return None
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
        return rows

    if "conv" in sections:
        rows = section("conv", lambda: bench_conv(args.quick, args.case))
        if rows is not None:
            write_json("conv", {"machine": info, "rows": rows})
            print(_fmt_table("\nconv variants (ratio = torch ms / cnnjax ms; > 1: cnnjax faster)", rows,
                             [("case", "case", ""), ("mode", "mode", ""), ("cnnjax_ms", "cnnjax ms", ".3f"),
                              ("torch_ms", "torch ms", ".3f"), ("ratio", "ratio", ".2f"),
                              ("reference_ms", "reference ms", ".3f"), ("reference_ratio", "ref. ratio", ".2f")]))
    for model_name in ("lenet5", "resnet20"):
        if model_name not in sections:
            continue
        from cnnjax.models import MODELS

        if model_name not in MODELS:
            print(f"\n== {model_name}: not registered in cnnjax.models yet: skipped", flush=True)
            continue
        rows = section(f"{model_name} train step, batch 128", functools.partial(bench_train, model_name, args.quick))
        if rows is not None:
            write_json(model_name, {"machine": info, "rows": rows})
            print(_fmt_table(f"\n{model_name} training, batch 128, Adam 1e-3 (ratio = images/s / torch's)", rows,
                             [("contestant", "contestant", ""), ("images_per_s", "images/s", ",.0f"),
                              ("ms_per_step", "ms/step", ".2f"), ("ratio_vs_torch", "ratio", ".2f"),
                              ("ratio_vs_torch_best", "ratio (best runs)", ".2f"),
                              ("ratio_cpu_time", "ratio (CPU time)", ".2f"), ("first_step_s", "first step s", ".2f")]))
    if "compile" in sections:
        rows = section("time to first step", lambda: bench_compile(args.quick))
        if rows is not None:
            write_json("compile", {"machine": info, "rows": rows})
            print(_fmt_table("\ntime to the first train step (trace + compile + run), batch 128", rows,
                             [("model", "model", ""), ("contestant", "contestant", ""),
                              ("first_step_s", "seconds", ".2f"), ("train_state_s", "train state s", ".2f"),
                              ("to_first_step_s", "process start to first step s", ".2f")]))
    for ext in ("deform_conv", "data_pipeline"):
        if ext in sections:
            rows = section(ext, functools.partial(_external, ext, args.quick))
            _print_external(ext, rows)
    info["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    info["wall_s"] = time.perf_counter() - t_start
    info["failed_sections"] = failed
    info["load_average_end"] = machine_info().get("load_average")
    write_json("machine", info)
    print(f"\ndone in {info['wall_s']:.0f} s; results in benchmarks/results/", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
