"""The entry points' process defaults: YNNPACK and the concurrency-optimized scheduler off, a persistent
compilation cache; `import cnnjax` changes nothing in the process."""

import os
import subprocess
import sys

import pytest

from experiments import process_defaults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, env_update: dict) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", process_defaults.OPT_OUT, process_defaults.CACHE_DIR)}
    env.update(env_update)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    return out.stdout.strip().splitlines()[-1]


def test_importing_cnnjax_leaves_the_environment_alone():
    code = "import os, cnnjax, cnnjax.training, cnnjax.models; print(repr(os.environ.get('XLA_FLAGS')))"
    assert _python(code, {}) == "None"
    assert _python(code, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}) == \
        repr("--xla_force_host_platform_device_count=2")


def _flags_after_apply(env_update):
    code = ("import os; from experiments import process_defaults as p; p.apply_xla_defaults(); "
            "print(repr(os.environ.get('XLA_FLAGS')))")
    return eval(_python(code, env_update))  # noqa: S307 - our own repr


def test_entry_point_defaults_add_their_flags_and_keep_other_flags():
    both = f"{process_defaults.YNN_OFF} {process_defaults.CONCURRENCY_SCHEDULER_OFF}"
    assert _flags_after_apply({}) == both
    flags = _flags_after_apply({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert flags == f"--xla_force_host_platform_device_count=2 {both}"


def test_a_users_own_setting_and_the_opt_out_are_left_alone():
    mine = "--xla_cpu_experimental_ynn_fusion_type=individual_dot"
    assert _flags_after_apply({"XLA_FLAGS": mine}) == f"{mine} {process_defaults.CONCURRENCY_SCHEDULER_OFF}"
    mine = "--xla_cpu_enable_concurrency_optimized_scheduler=true"
    assert _flags_after_apply({"XLA_FLAGS": mine}) == f"{mine} {process_defaults.YNN_OFF}"
    both = "--xla_cpu_experimental_ynn_fusion_type=dot --xla_cpu_enable_concurrency_optimized_scheduler"
    assert _flags_after_apply({"XLA_FLAGS": both}) == both
    assert _flags_after_apply({process_defaults.OPT_OUT: "0"}) is None


def test_the_flag_reaches_the_compiler():
    code = ("from experiments import process_defaults as p; p.apply_xla_defaults(); import jax, jax.numpy as jnp; "
            "print('__ynn_fusion' in jax.jit(lambda a, b: a @ b).lower(jnp.ones((64, 64)), jnp.ones((64, 64)))"
            ".compile().as_text())")
    assert _python(code, {}) == "False"
    assert _python(code, {process_defaults.OPT_OUT: "0"}) == "True"  # XLA's own default: YNNPACK fusions on


def test_with_the_defaults_independent_branches_do_not_all_hold_their_buffers_at_once():
    """Eight independent (256, 256) products, each sorted and summed: XLA:CPU's concurrency-optimized scheduler
    keeps all eight alive at once (8 x 256 KB of working memory), the defaults' scheduler one at a time."""
    code = ("from experiments import process_defaults as p; p.apply_xla_defaults(); import jax, jax.numpy as jnp; "
            "f = lambda x, ws: sum(jnp.sum(jnp.sort(jnp.tanh(x @ w), axis=-1)) for w in ws); "
            "x = jnp.ones((256, 256)); ws = [jnp.full((256, 256), float(i)) for i in range(8)]; "
            "print(jax.jit(f).lower(x, ws).compile().memory_analysis().temp_size_in_bytes)")
    ours, xlas = int(_python(code, {})), int(_python(code, {process_defaults.OPT_OUT: "0"}))
    assert ours <= 2 * 256 * 256 * 4 < 6 * 256 * 256 * 4 <= xlas, (ours, xlas)


def test_with_the_defaults_a_sum_over_a_relu_keeps_a_nan():
    """XLA:CPU's own default hands reductions to YNNPACK, fuses the ReLU's ``maximum`` into them, and YNNPACK's
    ``maximum`` drops NaN: ``sum(relu(x))`` of an array holding a NaN gives 0.0. The entry points' defaults
    keep YNNPACK off, so the NaN reaches the sum."""
    code = ("from experiments import process_defaults as p; p.apply_xla_defaults(); import jax, jax.numpy as jnp; "
            "x = jnp.zeros((32, 8, 8, 16)).at[3, 2, 1, 0].set(jnp.nan); "
            "print(jax.jit(lambda x: jnp.sum(jax.nn.relu(x)))(x))")
    assert _python(code, {}) == "nan"
    assert _python(code, {process_defaults.OPT_OUT: "0"}) == "0.0"  # XLA's default: if this changes, look again


def test_an_unknown_opt_out_value_is_refused_with_a_message(monkeypatch):
    monkeypatch.setenv(process_defaults.OPT_OUT, "false")
    with pytest.raises(ValueError, match="CNNJAX_XLA_DEFAULTS='false' must be '0'"):
        process_defaults.apply_xla_defaults()


def test_compilation_cache_is_written_then_reused_and_can_be_turned_off(tmp_path):
    code = ("from experiments import process_defaults as p; print(p.enable_compilation_cache()); "
            "import jax, jax.numpy as jnp; jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((32, 32))).block_until_ready()")
    cache = tmp_path / "cache"
    assert _python(code, {process_defaults.CACHE_DIR: str(cache)}) == str(cache)
    entries = sorted(os.listdir(cache))
    assert entries, "the first run wrote no compiled program into the cache"
    mtimes = {e: os.stat(cache / e).st_mtime_ns for e in entries}
    _python(code, {process_defaults.CACHE_DIR: str(cache)})  # the same program again: read, not rewritten
    assert {e: os.stat(cache / e).st_mtime_ns for e in sorted(os.listdir(cache))
            if not e.endswith("-atime")} == {e: t for e, t in mtimes.items() if not e.endswith("-atime")}
    assert _python(code, {process_defaults.CACHE_DIR: ""}) == "None"


def test_the_executable_cache_follows_the_compilation_cache(tmp_path):
    code = ("from experiments import process_defaults as p; p.enable_compilation_cache(); "
            "from cnnjax.training import executable_cache; print(executable_cache.get_folder())")
    assert _python(code, {process_defaults.CACHE_DIR: str(tmp_path)}) == str(tmp_path / "executables")
    assert _python(code, {process_defaults.CACHE_DIR: ""}) == "None"
    assert _python("from cnnjax.training import executable_cache; print(executable_cache.get_folder())", {}) == "None"


def test_every_entry_point_applies_the_defaults(tmp_path):
    """experiments.run/sweep/summary/report all start through config_resolver.run_app."""
    code = ("import os, sys; from experiments.config_resolver import run_app; sys.argv = ['x']; "
            "run_app(lambda argv: print(repr(os.environ.get('XLA_FLAGS')), "
            "__import__('jax').config.jax_compilation_cache_dir))")
    out = _python(code, {process_defaults.CACHE_DIR: str(tmp_path)})
    assert out == f"{' '.join(process_defaults.XLA_DEFAULTS)!r} {tmp_path}"
    for entry in ("run", "sweep", "summary", "report"):
        source = open(os.path.join(ROOT, "experiments", f"{entry}.py")).read()
        assert "run_app(main)" in source, entry
