"""The metric writer: JSON lines plus TensorBoard scalars (read back from the event file), without importing torch."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

_SCRIPT = """
import json, os, struct, sys
from cnnjax.training.metrics import MetricWriter, read_metrics
w = MetricWriter(sys.argv[1])
w.write(3, "train", {"loss": 0.25, "epoch": 1})
w.write(7, "validation", {"accuracy": 0.75})
w.close()
torch_imported = any(m == "torch" or m.startswith("torch.") for m in sys.modules)
from tensorboardX.proto.event_pb2 import Event
folder = os.path.join(sys.argv[1], "tensorboard")
(name,) = os.listdir(folder)
scalars, data = [], open(os.path.join(folder, name), "rb").read()
while data:  # TFRecord: uint64 length, uint32 crc, payload, uint32 crc
    (n,) = struct.unpack("<Q", data[:8])
    event = Event.FromString(data[12:12 + n])
    data = data[16 + n:]
    scalars += [(event.step, v.tag, round(v.simple_value, 6)) for v in event.summary.value]
print(json.dumps({"torch": torch_imported, "scalars": scalars, "jsonl": read_metrics(sys.argv[1])}))
"""


def test_scalars_reach_tensorboard_and_the_json_lines_without_importing_torch(tmp_path):
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert not result["torch"]  # tensorboardX would import it (seconds) when it is installed
    assert result["scalars"] == [[3, "train/loss", 0.25], [7, "validation/accuracy", 0.75]]
    assert [(r["step"], r["split"]) for r in result["jsonl"]] == [(3, "train"), (7, "validation")]
    assert result["jsonl"][0]["loss"] == 0.25 and result["jsonl"][0]["epoch"] == 1
