"""cnnjax's XLA defaults: YNNPACK off on import, a user's own flag and the opt-out respected."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from cnnjax import xla_defaults


def _flags_after_import(env_update):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_defaults.OPT_OUT)}
    env.update(env_update)
    code = "import os, cnnjax; print(repr(os.environ.get('XLA_FLAGS')))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own repr


def test_import_turns_ynnpack_off_and_keeps_other_flags():
    assert _flags_after_import({}) == xla_defaults.YNN_OFF
    flags = _flags_after_import({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert flags == f"--xla_force_host_platform_device_count=2 {xla_defaults.YNN_OFF}"


def test_a_users_own_setting_and_the_opt_out_are_left_alone():
    mine = "--xla_cpu_experimental_ynn_fusion_type=individual_dot"
    assert _flags_after_import({"XLA_FLAGS": mine}) == mine
    assert _flags_after_import({xla_defaults.OPT_OUT: "0"}) is None


def test_the_flag_reaches_the_compiler_and_is_not_reapplied_once_jax_runs():
    hlo = jax.jit(lambda a, b: a @ b).lower(jnp.ones((64, 64)), jnp.ones((64, 64))).compile().as_text()
    assert "__ynn_fusion" not in hlo
    before = os.environ.get("XLA_FLAGS")
    assert xla_defaults.apply() is False  # the backend has started: changing XLA_FLAGS now would mislead
    assert os.environ.get("XLA_FLAGS") == before


def test_an_unknown_opt_out_value_is_refused_with_a_message(monkeypatch):
    monkeypatch.setenv(xla_defaults.OPT_OUT, "false")
    with pytest.raises(ValueError, match="CNNJAX_XLA_DEFAULTS='false' must be '0'"):
        xla_defaults.apply()
