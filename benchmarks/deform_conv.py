"""Deformable convolution speed and memory: cnnjax vs the best references that run here, side by side.

    python -m benchmarks.deform_conv            # full run (also the memory check), writes results/deform_conv.json
    python -m benchmarks.deform_conv --quick    # small repeat counts, no memory check

Implementations compared in the same process, on identical shapes and data (CPU):

* ``cnnjax``: :func:`cnnjax.ops.deform_conv2d` (one gather of the four corners per sample, one matmul
  per tap; custom VJP with one scatter-add per tap), under ``jax.jit``.
* ``jax-4gather-autodiff``: the plain JAX version the issue measured: four separate corner gathers,
  an einsum, and JAX's automatic derivative (four scatter-adds and the derivative of the index math).
* ``torch-gather (autograd, T thr)``: PyTorch 2.13 CPU with T intra-op threads, deformable conv written
  with torch ops: four ``index_select`` gathers of the bilinear corners + one matmul, torch autograd.
* ``torch-grid_sample (autograd, T thr)``: PyTorch 2.13 CPU, bilinear sampling by ``F.grid_sample``
  (zeros padding, ``align_corners=True``: the same zero-outside semantics) + one matmul, autograd.

* ``torchvision (T thr)``: ``torchvision.ops.deform_conv2d`` (its C++ kernel; the issue quotes 87 ms forward /
  450 ms forward+backward at (8, 28, 28, 64) -> 64, 3x3), when torchvision is importable. Its PyPI wheels
  need the CUDA build of torch (which also runs on a CPU), so it is not in the default environment; see
  README ("Deformable convolution") for the side environment it was measured in.
Timings interleave the implementations round by round and report medians, because the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.ops.deform import deform_conv2d

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "deform_conv.json")

# (name, N, H, W, C_in, C_out, k, stride, padding, modulated)
SHAPES = [
    ("issue", 8, 28, 28, 64, 64, 3, 1, 1, False),
    ("issue-v2", 8, 28, 28, 64, 64, 3, 1, 1, True),
    ("small", 16, 14, 14, 32, 32, 3, 1, 1, False),
]
QUICK_SHAPES = SHAPES[:1]


# ----------------------------------------------------------------------------------------------------
# Baseline 1: plain JAX with four gathers and autodiff


def deform_conv2d_4gather(x, offsets, kernel, bias=None, *, stride=1, padding=0, mask=None):
    """Straightforward JAX deformable conv (1 offset group, 1 group): four gathers, autodiff backward."""
    n, h, w, c = x.shape
    kh, kw, _, c_out = kernel.shape
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (w + 2 * padding - kw) // stride + 1
    k = kh * kw
    off = offsets.reshape(n, ho, wo, k, 2)
    ti, tj = jnp.repeat(jnp.arange(kh), kw), jnp.tile(jnp.arange(kw), kh)
    py = (jnp.arange(ho) * stride - padding)[:, None, None] + ti[None, None, :]
    px = (jnp.arange(wo) * stride - padding)[None, :, None] + tj[None, None, :]
    sy = py[None] + off[..., 0]
    sx = px[None] + off[..., 1]
    y0, x0 = jnp.floor(sy), jnp.floor(sx)
    ly, lx = sy - y0, sx - x0
    y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
    bidx = jnp.arange(n)[:, None, None, None]

    def corner(yy, xx, wgt):
        valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        v = x[bidx, jnp.clip(yy, 0, h - 1), jnp.clip(xx, 0, w - 1)]  # (n, ho, wo, k, c)
        return v * jnp.where(valid, wgt, 0.0)[..., None]

    s = (
        corner(y0, x0, (1 - ly) * (1 - lx))
        + corner(y0, x0 + 1, (1 - ly) * lx)
        + corner(y0 + 1, x0, ly * (1 - lx))
        + corner(y0 + 1, x0 + 1, ly * lx)
    )
    if mask is not None:
        s = s * mask[..., None]
    y = jnp.einsum("nhwkc,kco->nhwo", s, kernel.reshape(k, c, c_out))
    return y if bias is None else y + bias


# ----------------------------------------------------------------------------------------------------
# Baselines 2 and 3: PyTorch ops (CPU), autograd backward


def _torch_positions(torch, offsets, n, h, w, kh, kw, stride, padding):
    ho, wo = offsets.shape[1], offsets.shape[2]
    off = offsets.reshape(n, ho, wo, kh * kw, 2)
    ti = torch.arange(kh).repeat_interleave(kw)
    tj = torch.arange(kw).repeat(kh)
    py = (torch.arange(ho) * stride - padding)[:, None, None] + ti[None, None, :]
    px = (torch.arange(wo) * stride - padding)[None, :, None] + tj[None, None, :]
    return py[None] + off[..., 0], px[None] + off[..., 1]


def torch_deform_gather(torch, x, offsets, kernel, bias, stride, padding, mask=None):
    """x (N, H, W, C), offsets (N, Ho, Wo, K*2), kernel (K*C, C_out): four index_select gathers + matmul."""
    n, h, w, c = x.shape
    kh = kw = int(round((kernel.shape[0] // c) ** 0.5))
    sy, sx = _torch_positions(torch, offsets, n, h, w, kh, kw, stride, padding)
    y0, x0 = torch.floor(sy), torch.floor(sx)
    ly, lx = sy - y0, sx - x0
    y0, x0 = y0.long(), x0.long()
    base = torch.arange(n).view(n, 1, 1, 1) * (h * w)
    xf = x.reshape(n * h * w, c)
    cols = 0
    for yy, xx, wgt in (
        (y0, x0, (1 - ly) * (1 - lx)),
        (y0, x0 + 1, (1 - ly) * lx),
        (y0 + 1, x0, ly * (1 - lx)),
        (y0 + 1, x0 + 1, ly * lx),
    ):
        valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        idx = (base + yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).reshape(-1)
        v = xf.index_select(0, idx).view(*yy.shape, c)
        cols = cols + v * (wgt * valid)[..., None]
    if mask is not None:
        cols = cols * mask[..., None]
    y = cols.reshape(-1, kernel.shape[0]) @ kernel + bias
    return y.view(n, offsets.shape[1], offsets.shape[2], -1)


def torch_deform_grid_sample(torch, x_nchw, offsets, kernel, bias, stride, padding, mask=None):
    """x (N, C, H, W): bilinear sampling by grid_sample (zeros outside, align_corners=True) + matmul."""
    import torch.nn.functional as F

    n, c, h, w = x_nchw.shape
    kh = kw = int(round((kernel.shape[0] // c) ** 0.5))
    ho, wo = offsets.shape[1], offsets.shape[2]
    sy, sx = _torch_positions(torch, offsets, n, h, w, kh, kw, stride, padding)  # (n, ho, wo, k)
    grid = torch.stack([sx * (2.0 / (w - 1)) - 1, sy * (2.0 / (h - 1)) - 1], dim=-1)
    s = F.grid_sample(x_nchw, grid.reshape(n, ho, wo * kh * kw, 2), mode="bilinear", padding_mode="zeros",
                      align_corners=True)  # (n, c, ho, wo*k)
    s = s.view(n, c, ho, wo, kh * kw)
    if mask is not None:
        s = s * mask.view(n, 1, ho, wo, kh * kw)
    cols = s.permute(0, 2, 3, 4, 1).reshape(n * ho * wo, kh * kw * c)
    return (cols @ kernel + bias).view(n, ho, wo, -1)


# ----------------------------------------------------------------------------------------------------
# Timing


def _block(tree):
    jax.block_until_ready(tree)


def _make_jax(fn, shape):
    _, n, h, w, c, co, k, stride, padding, modulated = shape

    def fwd(x, off, kern, b, m):
        return fn(x, off, kern, b, stride=stride, padding=padding, mask=m)

    def fwd_bwd(x, off, kern, b, m, g):
        y, vjp = jax.vjp(fwd, x, off, kern, b, m)
        return y, vjp(g)

    return jax.jit(fwd), jax.jit(fwd_bwd)


def _case(shape, seed=0):
    _, n, h, w, c, co, k, stride, padding, modulated = shape
    rng = np.random.default_rng(seed)
    ho = (h + 2 * padding - k) // stride + 1
    wo = (w + 2 * padding - k) // stride + 1
    x = rng.normal(size=(n, h, w, c)).astype(np.float32)
    off = rng.uniform(-2, 2, size=(n, ho, wo, k * k * 2)).astype(np.float32)
    kern = (rng.normal(size=(k, k, c, co)) / np.sqrt(k * k * c)).astype(np.float32)
    b = rng.normal(size=(co,)).astype(np.float32)
    m = rng.uniform(size=(n, ho, wo, k * k)).astype(np.float32) if modulated else None
    g = rng.normal(size=(n, ho, wo, co)).astype(np.float32)
    return x, off, kern, b, m, g


def bench_shape(shape, repeats: int, torch_threads: int | None = None) -> list[dict]:
    import torch

    name, n, h, w, c, co, k, stride, padding, modulated = shape
    x, off, kern, b, m, g = _case(shape)
    impls = {}

    # JAX implementations
    for label, fn in (("cnnjax", deform_conv2d), ("jax-4gather-autodiff", deform_conv2d_4gather)):
        f, fb = _make_jax(fn, shape)
        args = [jnp.asarray(a) for a in (x, off, kern, b)] + [None if m is None else jnp.asarray(m)]
        gj = jnp.asarray(g)
        impls[label] = (
            (lambda f=f, args=args: _block(f(*args))),
            (lambda fb=fb, args=args, gj=gj: _block(fb(*args, gj))),
        )

    # torch implementations
    tx = torch.tensor(x)
    tx_nchw = torch.tensor(x.transpose(0, 3, 1, 2)).contiguous()
    toff, tb, tg = torch.tensor(off), torch.tensor(b), torch.tensor(g)
    tk = torch.tensor(kern.reshape(k * k * c, co))
    tm = None if m is None else torch.tensor(m)

    def torch_pair(fn, inputs, mask, threads):
        """(forward, forward+backward) of ``fn(torch, x, offsets, kernel, bias, stride, padding, mask)``."""
        def fwd():
            torch.set_num_threads(threads)
            with torch.no_grad():
                fn(torch, *inputs, stride, padding, mask)

        def fwd_bwd():
            torch.set_num_threads(threads)
            leaves = [t.detach().requires_grad_(True) for t in inputs]
            mm = None if mask is None else mask.detach().requires_grad_(True)
            fn(torch, *leaves, stride, padding, mm).backward(tg)

        return fwd, fwd_bwd

    # On a shared, oversubscribed machine torch's OpenMP threads can hurt it badly: time 1 thread and all.
    all_threads = torch_threads or torch.get_num_threads()
    for threads in sorted({1, all_threads}):
        impls[f"torch-gather (autograd, {threads} thr)"] = torch_pair(
            torch_deform_gather, (tx, toff, tk, tb), tm, threads)
        impls[f"torch-grid_sample (autograd, {threads} thr)"] = torch_pair(
            torch_deform_grid_sample, (tx_nchw, toff, tk, tb), tm, threads)

    try:
        import torchvision.ops as tv_ops
    except ImportError:  # optional: a multi-GB CUDA wheel
        tv_ops = None
    if tv_ops is not None:
        tk_oihw = torch.tensor(kern.transpose(3, 2, 0, 1)).contiguous()
        toff_nchw = torch.tensor(off.transpose(0, 3, 1, 2)).contiguous()
        tm_nchw = None if m is None else torch.tensor(m.transpose(0, 3, 1, 2)).contiguous()

        def torchvision_fn(torch, xin, offsets, kernel, bias, stride, padding, mask=None):
            y = tv_ops.deform_conv2d(xin, offsets, kernel, bias, stride=stride, padding=padding, mask=mask)
            return y.permute(0, 2, 3, 1)

        for threads in sorted({1, all_threads}):
            impls[f"torchvision (C++, {threads} thr)"] = torch_pair(
                torchvision_fn, (tx_nchw, toff_nchw, tk_oihw, tb), tm_nchw, threads)

    # check that all implementations agree before timing
    ref = np.asarray(jax.jit(lambda *a: deform_conv2d(*a[:4], stride=stride, padding=padding, mask=a[4]))(
        x, off, kern, b, m))
    with torch.no_grad():
        for fn, xin in ((torch_deform_gather, tx), (torch_deform_grid_sample, tx_nchw)):
            np.testing.assert_allclose(fn(torch, xin, toff, tk, tb, stride, padding, tm).numpy(), ref,
                                       rtol=2e-3, atol=2e-3)
        if tv_ops is not None:
            np.testing.assert_allclose(torchvision_fn(torch, tx_nchw, toff_nchw, tk_oihw, tb, stride, padding,
                                                      tm_nchw).numpy(), ref, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(
        np.asarray(jax.jit(lambda *a: deform_conv2d_4gather(*a[:4], stride=stride, padding=padding, mask=a[4]))(
            x, off, kern, b, m)), ref, rtol=2e-3, atol=2e-3)

    times = {label: ([], [], []) for label in impls}  # wall fwd, wall fwd+bwd, process-CPU fwd+bwd
    for label, (f, fb) in impls.items():  # warm-up / compile
        f()
        fb()
    for _ in range(repeats):  # interleaved: every round runs every implementation once
        for label, (f, fb) in impls.items():
            t0 = time.perf_counter()
            f()
            times[label][0].append((time.perf_counter() - t0) * 1e3)
            t0, c0 = time.perf_counter(), time.process_time()
            fb()
            times[label][1].append((time.perf_counter() - t0) * 1e3)
            times[label][2].append((time.process_time() - c0) * 1e3)
    ours = statistics.median(times["cnnjax"][1])
    rows = []
    for label, (tf, tfb, cfb) in times.items():
        fb = statistics.median(tfb)
        rows.append(
            {
                "name": name,
                "shape": f"({n},{h},{w},{c})->{co} {k}x{k} s{stride} p{padding}" + (" v2" if modulated else ""),
                "impl": label,
                "ms fwd": round(statistics.median(tf), 2),
                "ms fwd+bwd": round(fb, 2),
                "ratio": round(fb / ours, 2),
                "min ms fwd+bwd": round(min(tfb), 2),
                "cpu ms fwd+bwd": round(statistics.median(cfb), 2),
            }
        )
    return rows


# ----------------------------------------------------------------------------------------------------
# Memory: a (64, 56, 56, 256) -> 256 3x3 layer, forward + backward, in a fresh process


_MEMORY_SCRIPT = r"""
import resource, sys, time
import jax, jax.numpy as jnp
from cnnjax.ops.deform import deform_conv2d
n, h, w, c, co = 64, 56, 56, 256, 256
key = jax.random.PRNGKey(0)
k1, k2, k3, k4 = jax.random.split(key, 4)
x = jax.random.normal(k1, (n, h, w, c))
off = jax.random.uniform(k2, (n, h, w, 18), minval=-2, maxval=2)
kern = jax.random.normal(k3, (3, 3, c, co)) * 0.02
g = jax.random.normal(k4, (n, h, w, co))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
@jax.jit
def fwd_bwd(x, off, kern, g):
    y, vjp = jax.vjp(lambda x, o, k: deform_conv2d(x, o, k, padding=1), x, off, kern)
    return y, vjp(g)
t0 = time.perf_counter()
jax.block_until_ready(fwd_bwd(x, off, kern, g))
t = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{before / 2**20:.3f} {peak / 2**20:.3f} {t:.1f}")
"""


def measure_memory() -> dict:
    """Peak resident memory (ru_maxrss, GiB) of a fresh process running forward + backward once."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True, text=True, env=env,
                         check=True)
    before, peak, seconds = (float(v) for v in out.stdout.split()[-3:])
    return {
        "name": "memory",
        "shape": "(64,56,56,256)->256 3x3 s1 p1",
        "impl": "cnnjax",
        "peak RSS GiB (fwd+bwd, incl. inputs)": round(peak, 2),
        "RSS GiB before (inputs + runtime)": round(before, 2),
        "s fwd+bwd (incl. compile)": round(seconds, 1),
    }


def _table(rows: list[dict]) -> str:
    keys = ["name", "shape", "impl", "ms fwd", "ms fwd+bwd", "ratio", "min ms fwd+bwd", "cpu ms fwd+bwd"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        if "ms fwd" in r:
            lines.append("| " + " | ".join(str(r[k]) for k in keys) + " |")
    for r in rows:
        if "ms fwd" not in r:
            lines.append("\n" + ", ".join(f"{k}: {v}" for k, v in r.items()))
    return "\n".join(lines)


def run(quick: bool = False) -> list[dict]:
    """Run the benchmark; returns rows (name, shape, impl, ms fwd, ms fwd+bwd, ratio = ms fwd+bwd / cnnjax's).

    Times are medians over interleaved rounds (wall clock); ``min ms fwd+bwd`` is the least disturbed round
    and ``cpu ms fwd+bwd`` the process CPU time (all threads; torch's OpenMP workers spin, so it is an
    upper bound there). The full run appends one memory row (peak RSS of a fresh process).
    """
    rows = []
    for shape in QUICK_SHAPES if quick else SHAPES:
        rows += bench_shape(shape, repeats=5 if quick else 15)
    if not quick:
        rows.append(measure_memory())
    return rows


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one shape, few repeats, no memory check")
    parser.add_argument("--no-write", action="store_true", help="do not write results/deform_conv.json")
    args = parser.parse_args(argv)
    rows = run(quick=args.quick)
    print(_table(rows))
    if not args.no_write:
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        meta = {
            "command": "python -m benchmarks.deform_conv" + (" --quick" if args.quick else ""),
            "jax": jax.__version__,
            "torch": _version("torch"),
            "torchvision": _version("torchvision"),
            "cores_usable": len(os.sched_getaffinity(0)),  # less than cpu_count under taskset
            "devices": [str(d) for d in jax.devices()],
            "cpu_count": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "maxrss_GiB_this_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        }
        with open(RESULTS, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=2)
        print(f"wrote {RESULTS}")
    return rows


if __name__ == "__main__":
    main()
