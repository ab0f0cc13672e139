"""The submitit executor end to end with submitit's local executor: each trial a separate job process."""

import json
import os

from cnnjax.training.sweeps import run_sweep
from tests.training.sweep_config_tiny import get_config


def test_submitit_local_executor_runs_a_tiny_sweep(tmp_path):
    workdir = tmp_path / "sweep"
    result = run_sweep(get_config("submitit"), str(workdir), executor="submitit", submitit_cluster="local",
                       submitit_parameters={"timeout_min": 10})
    assert result["failures"] == []
    assert [r["trial"] for r in result["rows"]] == ["conv=standard,seed=0", "conv=standard,seed=1"]
    logs = os.listdir(workdir / "submitit")
    assert any(name.endswith("_result.pkl") for name in logs)  # submitit's own job results
    for trial in ("conv=standard,seed=0", "conv=standard,seed=1"):
        summary = json.loads((workdir / trial / "summary.json").read_text())
        assert summary["processes"] == 1  # no jax.distributed.initialize() in a single-trial job
    job_ids = {n.split("_")[0] for n in logs if n.endswith("_log.out")}
    assert len(job_ids) == 2 and str(os.getpid()) not in job_ids  # two job processes (local job id = pid)
    out = "".join(open(workdir / "submitit" / n).read() for n in logs if n.endswith("_log.out"))
    assert out.count("test accuracy") == 2
    assert (workdir / "results.md").read_text().count("± ") == 2
    again = run_sweep(get_config("submitit"), str(workdir), executor="submitit", submitit_cluster="local")
    assert again["trained"] == [] and again["skipped"] == ["conv=standard,seed=0", "conv=standard,seed=1"]
