"""``executable_cache``: compiled programs saved, loaded (in this process and in new ones) with the same results,
keyed by the caller's key, the arguments, the code and the installed packages; damaged files recompiled."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.training import executable_cache
from cnnjax.training.train import program_key, train_and_evaluate
from tests.conftest import REPO_ROOT
from tests.training.run_helpers import assert_same_run, tiny_config


@pytest.fixture
def folder(tmp_path):
    """The cache on, in a temporary folder, for one test."""
    before = executable_cache.get_folder()
    executable_cache.set_folder(str(tmp_path / "executables"))
    yield tmp_path / "executables"
    executable_cache.set_folder(before)


def _fn(x, w):
    return {"y": jnp.tanh(x @ w).sum(0), "g": jax.grad(lambda w: jnp.sum(jnp.sin(x @ w) ** 2))(w)}


def _args(n=8):
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.normal(size=(n, 6)), jnp.float32), jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)


def _file_identity(path):
    """A save writes a new file and renames it over the old one (a new inode); a load only refreshes its time."""
    return os.stat(path).st_ino


def _programs(folder):
    """The program files in ``folder`` (not the ``.next`` lists of the programs that follow a leading one)."""
    return [n for n in os.listdir(folder) if n.endswith(executable_cache.SUFFIX)]


def _assert_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_off_unless_a_folder_is_set():
    assert executable_cache.get_folder() is None  # a library import leaves it off
    f = executable_cache.cached_jit(_fn, key={})
    assert not isinstance(f, executable_cache.CachedJit)
    _assert_equal(f(*_args()), jax.jit(_fn)(*_args()))


def test_bad_settings_are_refused_with_a_message():
    for bad in (0, -1, 1.5, True, "2GB"):
        with pytest.raises(ValueError, match=f"max_bytes={bad!r} must be a positive number of bytes"):
            executable_cache.set_folder("/tmp/unused", max_bytes=bad)
    assert executable_cache.get_folder() is None  # a refused call changes nothing
    with pytest.raises(TypeError, match=r"key=\('lr', 0.1\) must be a dict"):
        executable_cache.cached_jit(_fn, key=("lr", 0.1))
    with pytest.raises(TypeError, match=r"leads='yes' must be True \(this program starts a run\) or False"):
        executable_cache.cached_jit(_fn, key={}, leads="yes")


def test_a_program_is_saved_then_loaded_with_the_same_results(folder):
    first = executable_cache.cached_jit(_fn, key={"k": 1})
    expected = jax.jit(_fn)(*_args())
    _assert_equal(first(*_args()), expected)
    assert first.events == ["compiled"]
    assert os.listdir(folder) == [os.path.basename(first.path_for(*_args()))]
    again = executable_cache.cached_jit(_fn, key={"k": 1})
    _assert_equal(again(*_args()), expected)
    _assert_equal(again(*_args()), expected)
    assert again.events == ["loaded"]


def test_another_signature_gets_its_own_program(folder):
    f = executable_cache.cached_jit(_fn, key={})
    for n in (8, 5, 8, 5):
        _assert_equal(f(*_args(n)), jax.jit(_fn)(*_args(n)))
    assert f.events == ["compiled", "compiled"]
    assert len(os.listdir(folder)) == 2
    with pytest.raises(TypeError):
        f(jnp.ones((8, 6)), jnp.ones((7, 3)))  # JAX's own error for shapes that do not fit


def test_the_key_arguments_and_options_choose_the_file(folder):
    def path(key, args, **kw):
        return executable_cache.cached_jit(_fn, key=key, **kw).path_for(*args)

    x, w = _args()
    base = path({"lr": 0.1}, (x, w))
    assert path({"lr": 0.1}, (x, w)) == base
    assert path({"lr": 0.2}, (x, w)) != base
    assert path({"lr": 0.1}, (x[:4], w)) != base
    assert path({"lr": 0.1}, (x.astype(jnp.bfloat16), w)) != base
    assert path({"lr": 0.1}, (x, w), donate_argnums=0) != base
    assert path({"lr": 0.1}, (x, w), compiler_options={"xla_backend_optimization_level": 1}) != base


def test_the_code_and_the_installed_packages_are_in_the_key(folder, tmp_path, monkeypatch):
    f = executable_cache.cached_jit(_fn, key={})
    package = tmp_path / "src" / "cachekeypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n")
    (package / "unimported.py").write_text("OTHER = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    import cachekeypkg  # noqa: F401 - a loaded top-level package outside the installed ones

    try:
        before, path = executable_cache.code_fingerprint(), f.path_for(*_args())
        (package / "unimported.py").write_text("OTHER = 3\n")  # a file of the package, though not imported
        assert executable_cache.code_fingerprint() != before
        assert f.path_for(*_args()) != path
        before = executable_cache.code_fingerprint()
        (package / "kernel.cc").write_text("// C++ that the package builds (as cnnjax/ops/fast/direct.cc)\n")
        assert executable_cache.code_fingerprint() != before
    finally:
        del sys.modules["cachekeypkg"]
    packages, path = executable_cache.environment_fingerprint()["distributions"], f.path_for(*_args())
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "somepackage-1.0.dist-info").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    executable_cache._distributions.cache_clear()
    try:
        assert executable_cache.environment_fingerprint()["distributions"] != packages
        assert f.path_for(*_args()) != path
    finally:
        monkeypatch.undo()
        executable_cache._distributions.cache_clear()


def test_a_damaged_file_is_reported_and_compiled_again(folder, capfd):
    f = executable_cache.cached_jit(_fn, key={})
    expected = f(*_args())
    path = f.path_for(*_args())
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    g = executable_cache.cached_jit(_fn, key={})
    _assert_equal(g(*_args()), expected)
    assert g.events == ["recompiled"]
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be used (ValueError: checksum mismatch); compiling it again" in err[0]
    h = executable_cache.cached_jit(_fn, key={})
    _assert_equal(h(*_args()), expected)
    assert h.events == ["loaded"]


def _square(x, w):
    return {"y": (x @ w) ** 2}


def _cube(x, w):
    return {"y": (x @ w) ** 3}


def test_a_leading_program_preloads_the_programs_that_followed_it(folder, capfd, monkeypatch):
    """A run's leading program records the files obtained after it, in order; the next time it is loaded they
    load in the background, and the calls that need them take them: same results, event "preloaded". A
    follower whose file is damaged is reported by the call that needs it and compiled again."""
    def run(followers):
        leader = executable_cache.cached_jit(_fn, key={"run": 1}, leads=True)
        out = [leader(*_args())]
        calls = [executable_cache.cached_jit(fn, key={"run": 1}) for fn in followers]
        out += [f(*_args()) for f in calls]
        return out, [leader.events] + [f.events for f in calls], leader.path_for(*_args())

    expected, events, leader_path = run([_square, _cube])
    assert events == [["compiled"], ["compiled"], ["compiled"]]
    next_file = leader_path.replace(executable_cache.SUFFIX, executable_cache.NEXT_SUFFIX)
    recorded = json.load(open(next_file))
    assert [n.split("-")[0] for n in recorded] == ["tests.training.test_executable_cache._square",
                                                   "tests.training.test_executable_cache._cube"]
    again, events, _ = run([_square, _cube])
    assert events == [["loaded"], ["preloaded"], ["preloaded"]]
    _assert_equal(again, expected)
    assert executable_cache._run["preloads"] == {}

    loads = []  # the leader again before any follower (one initial state per seed): one preload per follower
    monkeypatch.setattr(executable_cache, "_deserialize", lambda c, real=executable_cache._deserialize: (
        loads.append(1), real(c))[1])
    for _ in range(3):
        executable_cache.cached_jit(_fn, key={"run": 1}, leads=True)(*_args())
    again, events, _ = run([_square, _cube])  # (its leader call is the fourth, still before any follower)
    assert events == [["loaded"], ["preloaded"], ["preloaded"]] and len(loads) == 4 + 2
    monkeypatch.undo()

    square_file = os.path.join(folder, recorded[0])
    data = bytearray(open(square_file, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(square_file, "wb").write(bytes(data))
    again, events, _ = run([_square, _cube])
    assert events == [["loaded"], ["recompiled"], ["preloaded"]]
    _assert_equal(again, expected)
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be used (ValueError: checksum mismatch); compiling it again" in err[0]

    _, events, _ = run([_cube])  # another run after the same leader: the list follows what the run used
    assert events == [["loaded"], ["preloaded"]]
    assert json.load(open(next_file)) == [recorded[1]]


def test_a_damaged_list_of_followers_only_costs_the_preloading(folder):
    leader = executable_cache.cached_jit(_fn, key={"run": 2}, leads=True)
    leader(*_args())
    next_file = leader.path_for(*_args()).replace(executable_cache.SUFFIX, executable_cache.NEXT_SUFFIX)
    for i, text in enumerate(("{not json", "3", '["../../elsewhere.jaxexe", 3, "gone.jaxexe"]')):
        open(next_file, "w").write(text)
        again = executable_cache.cached_jit(_fn, key={"run": 2}, leads=True)
        follower = executable_cache.cached_jit(_square, key={"run": 2})
        _assert_equal(again(*_args()), leader(*_args()))
        _assert_equal(follower(*_args()), jax.jit(_square)(*_args()))
        assert (again.events, follower.events) == (["loaded"], ["compiled" if i == 0 else "loaded"])
        assert [n.split("-")[0] for n in json.load(open(next_file))] == [
            "tests.training.test_executable_cache._square"]  # rewritten to what this run used


_EXIT_WHILE_PRELOADING = """
import sys
from cnnjax.training import executable_cache
from tests.training.test_executable_cache import _args, _fn, _square, _cube
executable_cache.set_folder(sys.argv[1])
executable_cache.cached_jit(_fn, key={"run": 3}, leads=True)(*_args())
if sys.argv[2] == "first":
    executable_cache.cached_jit(_square, key={"run": 3})(*_args())
    executable_cache.cached_jit(_cube, key={"run": 3})(*_args())
sys.exit(3)  # a run that stops (say, on an error) while its followers are still loading in the background
"""


def test_a_process_that_ends_while_preloading_exits_normally(tmp_path):
    def run(which):
        return subprocess.run([sys.executable, "-c", _EXIT_WHILE_PRELOADING, str(tmp_path), which], cwd=REPO_ROOT,
                              env={**os.environ, "PYTHONPATH": REPO_ROOT}, capture_output=True, text=True)

    out = run("first")
    assert out.returncode == 3, out.stderr[-2000:]
    for _ in range(3):
        out = run("again")
        assert (out.returncode, out.stderr) == (3, "")


_STEP_SCRIPT = """
import json, sys
from experiments import process_defaults
process_defaults.apply()
import jax, jax.numpy as jnp, numpy as np
from cnnjax.models import get_model
from cnnjax.training import executable_cache
from cnnjax.training.steps import train_step
from cnnjax.training.train import create_train_state
from tests.training.test_executable_cache import step_config
if sys.argv[1] == "off":
    executable_cache.set_folder(None)
config = step_config()
state = create_train_state(config, get_model("lenet5", num_classes=10), (28, 28, 1), total_steps=100, cache_key={})
step = executable_cache.cached_jit(train_step, key={}, donate_argnums=0)
rng = np.random.default_rng(0)
batch = {"image": jnp.asarray(rng.integers(0, 256, (16, 28, 28, 1), np.uint8)),
         "label": jnp.asarray(rng.integers(0, 10, 16), jnp.int32)}
losses = []
for _ in range(3):
    kernel = jax.tree.leaves(state.params)[0]
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
print(json.dumps({"losses": losses, "donated": kernel.is_deleted(), "events": getattr(step, "events", None),
                  "params": float(sum(jnp.sum(x.astype(jnp.float64) ** 2) for x in jax.tree.leaves(state.params)))}))
"""


def step_config():
    import ml_collections

    return ml_collections.ConfigDict({"seed": 3, "optimizer": {"name": "adam", "learning_rate": 1e-3,
                                                               "schedule": "constant", "weight_decay": 0.0}})


def test_a_new_process_loads_a_train_step_that_jaxs_own_cache_had_compiled(tmp_path):
    """The train step (a TrainState with static fields, its input donated) in three processes sharing JAX's
    persistent cache: plain jit (fills JAX's cache), then the executable cache compiles (JAX's cache holds the
    program) and saves, then a third process loads it. XLA:CPU would lose kernels if the second process had
    saved the executable JAX's cache gave it; all three must train to the same bits."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "CNNJAX_XLA_DEFAULTS")}
    env.update(CNNJAX_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=REPO_ROOT)

    def run(mode):
        out = subprocess.run([sys.executable, "-c", _STEP_SCRIPT, mode], env=env, cwd=REPO_ROOT, capture_output=True,
                             text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    plain, compiled, loaded = run("off"), run("on"), run("on")
    # The third process's step is loaded in the background while its initial state's program loads.
    assert (plain["events"], compiled["events"], loaded["events"]) == (None, ["compiled"], ["preloaded"])
    assert plain["losses"] == compiled["losses"] == loaded["losses"]
    assert plain["params"] == compiled["params"] == loaded["params"]
    assert plain["donated"] and compiled["donated"] and loaded["donated"]
    assert sorted(n.split("-")[0] for n in _programs(tmp_path / "cache" / "executables")) == [
        "cnnjax.training.steps.train_step", "create_train_state"]


def test_the_runs_program_key_has_every_config_field_but_the_host_only_ones():
    def key(**overrides):
        return program_key(tiny_config(**overrides), num_classes=10, image_shape=(28, 28, 1), steps_per_epoch=8)

    assert key(seed=5, checkpoint_keep=1, progress_bar=True) == key()
    for field, value in (("optimizer.learning_rate", 0.5), ("num_epochs", 3), ("augment.hflip", False),
                         ("label_smoothing", 0.1), ("model.name", "small_cnn"), ("batch_size", 32)):
        assert key(**{field: value}) != key(), field
    assert program_key(tiny_config(), 10, (28, 28, 1), 9) != key()  # the schedule's length
    assert program_key(tiny_config(), 11, (28, 28, 1), 8) != key()  # the classifier's width


def test_a_second_run_of_a_config_loads_its_programs_and_trains_the_same(folder, tmp_path):
    """train_and_evaluate's three programs (initial state, train step, evaluation) are saved by the first run;
    a run of the same config with another seed in another workdir loads them (no file rewritten) and matches the
    same run without the cache, bit for bit."""
    train_and_evaluate(tiny_config(seed=0), str(tmp_path / "first"))
    names = sorted(os.listdir(folder))
    assert sorted(n.split("-")[0] for n in _programs(folder)) == [
        "cnnjax.training.steps.eval_step", "cnnjax.training.steps.train_step_and_sum", "create_train_state"]
    (leader,) = (n for n in names if n.startswith("create_train_state") and n.endswith(".jaxexe"))
    followers = json.loads((folder / leader.replace(".jaxexe", ".next")).read_text())
    assert [n.split("-")[0] for n in followers] == ["cnnjax.training.steps.train_step_and_sum",
                                                    "cnnjax.training.steps.eval_step"]  # in the order of use
    written = {n: _file_identity(folder / n) for n in names}
    train_and_evaluate(tiny_config(seed=1), str(tmp_path / "cached"))
    assert {n: _file_identity(folder / n) for n in sorted(os.listdir(folder))} == written
    assert executable_cache._run["preloads"] == {}  # both followers preloaded and taken (a preload is taken once)
    executable_cache.set_folder(None)
    train_and_evaluate(tiny_config(seed=1), str(tmp_path / "plain"))
    assert_same_run(tmp_path / "cached", tmp_path / "plain")


def test_vmap_over_seeds_loads_its_programs_and_trains_the_same(folder, tmp_path):
    """``train_seeds`` (a sweep's --vmap_seeds) keeps its vmapped programs the same way."""
    from cnnjax.training.vmap_seeds import train_seeds
    from tests.training.sweep_config_tiny import get_config

    def configs(*seeds):
        out = []
        for s in seeds:
            c = get_config()
            with c.unlocked():
                del c["sweep"]
            c.seed = s
            out.append(c)
        return out

    def summaries(name):
        return [{k: v for k, v in r.items() if k in ("test_loss", "test_accuracy", "steps")} for r in
                train_seeds(configs(0, 1), [str(tmp_path / name / str(s)) for s in (0, 1)])]

    summaries("first")
    names = sorted(os.listdir(folder))
    assert sorted(n.split("-")[0] for n in _programs(folder)) == [
        "create_train_state", "vmap_seeds.eval_step", "vmap_seeds.train_step_and_sum"]
    written = {n: _file_identity(folder / n) for n in names}
    cached = summaries("cached")
    assert {n: _file_identity(folder / n) for n in sorted(os.listdir(folder))} == written
    executable_cache.set_folder(None)
    assert cached == summaries("plain")


def test_the_folder_keeps_its_size_limit_least_recently_used_first(folder):
    f = executable_cache.cached_jit(_fn, key={})
    f(*_args(4))
    first = f.path_for(*_args(4))
    size = os.path.getsize(first)
    executable_cache.set_folder(str(folder), max_bytes=int(2.5 * size))  # room for two programs
    f = executable_cache.cached_jit(_fn, key={})
    f(*_args(5))
    os.utime(first, ns=(1, 1))  # the oldest use
    executable_cache.cached_jit(_fn, key={})(*_args(5))  # a load marks the second as used now
    stale, fresh = folder / ".tmp-killed-writer", folder / ".tmp-another-writer"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, ns=(1, 1))  # a process killed while it wrote, long ago
    orphan = folder / "create_train_state-gone.next"  # the list of followers of a program no longer there
    orphan.write_text("[]")
    listed = first.replace(executable_cache.SUFFIX, executable_cache.NEXT_SUFFIX)  # goes with its program
    open(listed, "w").write("[]")
    f(*_args(6))  # a third save goes over the limit: the least recently used goes (and the stale temporary file)
    assert sorted(os.listdir(folder)) == sorted([fresh.name] + [os.path.basename(f.path_for(*_args(n))) for n in (5, 6)])
