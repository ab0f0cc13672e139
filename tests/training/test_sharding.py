"""Data parallelism: 8 simulated CPU devices, and a real 2-process run through jax.distributed."""

import json
import socket
import subprocess
import sys
import textwrap

from tests.conftest import REPO_ROOT

EIGHT_DEVICES = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import functools, json
    import jax, jax.numpy as jnp, numpy as np
    import ml_collections
    from jax.sharding import Mesh
    from cnnjax.data.pipeline import train_batches
    from cnnjax.data.sources import synthetic_dataset
    from cnnjax.models import get_model
    from cnnjax.training import mesh as mesh_lib
    from cnnjax.training.steps import new_train_sums, train_step_and_sum
    from cnnjax.training.train import create_train_state

    assert jax.device_count() == 8, jax.devices()
    config = ml_collections.ConfigDict({"seed": 0, "optimizer": {"name": "adam", "learning_rate": 1e-3}})
    ds = synthetic_dataset(num_train=256)
    batch = next(train_batches(ds.train, 64, seed=0, epoch=0))
    results = {}
    for name, devices in (("one", jax.devices()[:1]), ("eight", jax.devices())):
        mesh = Mesh(np.asarray(devices), ("data",))
        state = create_train_state(config, get_model("lenet5"), (28, 28, 1), total_steps=10)
        state = mesh_lib.replicate(state, mesh)
        sums = mesh_lib.replicate(new_train_sums(), mesh)
        step = jax.jit(train_step_and_sum)
        sharded = mesh_lib.shard_batch(batch, mesh)
        assert len(sharded["image"].sharding.device_set) == len(devices)
        state, sums, metrics = step(state, sums, sharded)
        results[name] = (jax.device_get(state.params), float(metrics["loss"]))
    diffs = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))), results["one"][0], results["eight"][0])
    print(json.dumps({"max_param_diff": max(jax.tree_util.tree_leaves(diffs)),
                      "loss_one": results["one"][1], "loss_eight": results["eight"][1]}))
""")


def test_eight_device_step_equals_single_device_step():
    r = subprocess.run([sys.executable, "-c", EIGHT_DEVICES], cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["max_param_diff"] <= 1e-5
    assert abs(out["loss_one"] - out["loss_eight"]) <= 1e-5


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ARGS = ["--config=lenet", "--config.progress_bar=False", "--config.num_epochs=1", "--config.batch_size=64",
        "--config.dataset.train_limit=1024", "--config.dataset.test_limit=1000", "--config.tensorboard=False",
        "--config.checkpoint_every_steps=0"]


def test_two_process_run_agrees_with_one_process(tmp_path, fashion_mnist_dir):
    port = _free_port()
    env_cmd = [sys.executable, "-m", "experiments.run", *ARGS]
    procs = [
        subprocess.Popen([*env_cmd, f"--workdir={tmp_path / 'two'}", f"--coordinator_address=127.0.0.1:{port}",
                          "--num_processes=2", f"--process_id={i}"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    one = subprocess.run([*env_cmd, f"--workdir={tmp_path / 'one'}"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two_summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    one_summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert two_summary["processes"] == 2 and two_summary["devices"] == 2
    assert two_summary["test_count"] == one_summary["test_count"] == 1000
    assert two_summary["steps"] == one_summary["steps"] == 16
    # Same global batches, same initial weights: only the reduction order of the gradient differs.
    assert abs(two_summary["test_loss"] - one_summary["test_loss"]) < 1e-3
    assert abs(two_summary["test_accuracy"] - one_summary["test_accuracy"]) <= 0.005
