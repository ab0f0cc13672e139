"""The C++ direct convolution (:mod:`cnnjax.ops.fast.direct`) beyond what ``test_fast_paths.py`` checks of every
fast path: second derivatives, ``vmap``, results independent of the thread count, and a machine that cannot
build it. Its values and first derivatives against the reference: ``test_fast_paths.py::test_direct_conv_*``."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import ops
from cnnjax.ops import fast
from cnnjax.ops.fast import native

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _arrays(seed, *shapes):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.uniform(-1, 1, s).astype(np.float32)) for s in shapes]


def _takes_direct(fn, *args) -> bool:
    return "direct_conv_forward" in str(jax.make_jaxpr(fn)(*args))


def test_the_library_builds_here():
    """The suite runs where the C++ compiler is (CI installs nothing else for it): a failed build would only
    warn and leave every conv on XLA's formulations, so here it must fail."""
    assert native.available()


@pytest.mark.parametrize("stride", [1, 2])
def test_second_derivatives_equal_the_reference(stride):
    """Hessians with respect to the input and the kernel (the transposes of both primitives, and the kernel
    gradient's own derivatives) equal the reference's."""
    x, k = _arrays(0, (1, 5, 4, 16), (3, 3, 16, 16))

    def loss(x, k):
        return jnp.sum(jnp.sin(ops.conv(x, k, stride=stride, padding=1)))

    assert _takes_direct(loss, x, k)
    got = jax.jit(jax.hessian(loss, argnums=(0, 1)))(x, k)
    with fast.reference_only():
        want = jax.jit(jax.hessian(loss, argnums=(0, 1)))(x, k)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batched", ["input", "kernel", "both"])
def test_vmap_equals_the_reference_per_element(batched):
    """A batched input folds into the image axis, a batched kernel (one per seed) maps element by element:
    values and both gradients equal the reference applied to each element."""
    xs, ks = _arrays(1, (3, 2, 6, 6, 16), (3, 3, 3, 16, 32))
    x_axis, k_axis = {"input": (0, None), "kernel": (None, 0), "both": (0, 0)}[batched]
    x, k = (xs if x_axis is not None else xs[0]), (ks if k_axis is not None else ks[0])

    def value_and_grads(x, k):
        return jax.value_and_grad(lambda x, k: jnp.sum(ops.conv(x, k, padding=1) ** 2), argnums=(0, 1))(x, k)

    got = jax.jit(jax.vmap(value_and_grads, in_axes=(x_axis, k_axis)))(x, k)
    assert _takes_direct(jax.vmap(value_and_grads, in_axes=(x_axis, k_axis)), x, k)
    with fast.reference_only():
        for i in range(3):
            want = jax.jit(value_and_grads)(xs[i] if x_axis is not None else x, ks[i] if k_axis is not None else k)
            for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
                np.testing.assert_allclose(np.asarray(g)[i], np.asarray(w), rtol=2e-5, atol=2e-4)


_ONE_CPU_SCRIPT = """
import json, os, sys
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # before JAX sizes its thread pool
import jax, jax.numpy as jnp, numpy as np
from cnnjax import ops
rng = np.random.default_rng(5)
x = jnp.asarray(rng.uniform(-1, 1, (33, 10, 12, 16)).astype(np.float32))
k = jnp.asarray(rng.uniform(-1, 1, (3, 3, 16, 32)).astype(np.float32))
y, (dx, dk) = jax.jit(jax.value_and_grad(lambda x, k: jnp.sum(jnp.sin(ops.conv(x, k, padding=1))), (0, 1)))(x, k)
print(json.dumps([np.asarray(a).tobytes().hex() for a in (y, dx, dk)]))
"""


def test_results_do_not_depend_on_the_number_of_threads():
    """Each output is summed by one thread in a fixed order and the kernel gradient's partial sums follow image
    ranges set by N: a process on one CPU gives the same bits as this one."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    out = subprocess.run([sys.executable, "-c", _ONE_CPU_SCRIPT], capture_output=True, text=True, cwd=REPO_ROOT,
                         env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert out.returncode == 0, out.stderr[-3000:]
    one_cpu = json.loads(out.stdout.strip().splitlines()[-1])
    here = subprocess.run([sys.executable, "-c", _ONE_CPU_SCRIPT.replace("os.sched_setaffinity", "(lambda *a: 0)")],
                          capture_output=True, text=True, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert here.returncode == 0, here.stderr[-3000:]
    assert json.loads(here.stdout.strip().splitlines()[-1]) == one_cpu


_NO_COMPILER_SCRIPT = """
import json, warnings
warnings.simplefilter("always")
import jax, jax.numpy as jnp
from cnnjax import ops
x, k = jnp.ones((1, 6, 6, 16)), jnp.ones((3, 3, 16, 16))
with warnings.catch_warnings(record=True) as caught:
    jaxpr = str(jax.make_jaxpr(lambda x, k: ops.conv(x, k, padding=1))(x, k))
    y = ops.conv(x, k, padding=1)
print(json.dumps(["direct" in jaxpr, float(y[0, 2, 2, 0]), [str(w.message) for w in caught]]))
"""


@pytest.mark.parametrize("compiler", ["missing", "failing"])
def test_without_a_compiler_a_warning_and_xlas_formulations(tmp_path, compiler):
    """Where the library cannot be built (no compiler, or one that fails) the dispatch says so once and keeps
    XLA's formulations (right values), and leaves nothing in the build folder."""
    cxx = tmp_path / "cxx"
    cxx.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "cxx 1.0" && exit 0\necho "error: no" >&2\nexit 1\n')
    cxx.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "CNNJAX_NATIVE_DIR": str(tmp_path / "native"),
           "CXX": str(cxx) if compiler == "failing" else str(tmp_path / "no-such-compiler")}
    out = subprocess.run([sys.executable, "-c", _NO_COMPILER_SCRIPT], capture_output=True, text=True, cwd=REPO_ROOT,
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    takes_direct, value, warnings = json.loads(out.stdout.strip().splitlines()[-1])
    assert (takes_direct, value, len(warnings)) == (False, 144.0, 1), warnings
    assert warnings[0].startswith("cnnjax: the C++ kernels could not be built"), warnings
    left = os.listdir(tmp_path / "native") if (tmp_path / "native").exists() else []
    assert [f for f in left if f != ".lock"] == [], left  # no library, no half-written file
