"""Compiled programs kept on disk, keyed by what determines them before tracing: a second run of the same
config calls its train step without tracing, lowering or compiling it.

JAX's persistent compilation cache keys a program by its lowered form, so a warm start still traces the step
(ResNet-20: 0.5-0.6 s, mostly flax) and lowers it (0.1 s) before it finds the compiled program. Here
:func:`cached_jit` keys a program by

- ``key``: the caller's description of everything ``fn`` closes over (for the train loop: the config's fields
  that shape the program, the steps per epoch); the caller is responsible for it being complete,
- the arguments: tree structure (node types, dict keys, paths), shapes, dtypes, weak types, shardings,
- the code: the contents of every ``.py``, ``.cc`` and ``.h`` file of each top-level package or module that is
  loaded from outside the interpreter's and the installed packages' folders (cnnjax, experiments, your own modules), and the name
  and version of every installed distribution (jax, jaxlib, flax, optax, ...),
- the process: jax's configuration values, ``XLA_FLAGS`` and the other ``JAX_`` / ``XLA_`` / ``CNNJAX_``
  variables, the backend, its version and its devices, and the function's name and ``jit`` options.

A changed file, package, flag or config field gives another key: the program is traced and compiled again, in
full (see :func:`_compile_past_persistent_cache`). A file whose checksum does not match, or that fails to load,
is reported in one line on stderr and compiled again. The folder keeps at most :data:`MAX_FOLDER_BYTES`, least
recently used files deleted first. A program that starts a run (``cached_jit(..., leads=True)``: the initial
state) records in ``<its file>.next`` the programs the run obtained after it (train step, evaluation); when it
is loaded again, those files load in a background thread at the same time (XLA's deserialization releases the
GIL), so that a warm run's step is ready when its state is. Off (plain ``jax.jit``) unless a folder is set
(:func:`set_folder`; the entry points use ``$CNNJAX_CACHE_DIR/executables``), and in runs with more than one
device or process. Loading executes the file's pickled contents: use a folder only you write to.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import pickle
import sys
import sysconfig
import tempfile
import threading
import time
from concurrent.futures import Future

import jax
from jax.experimental import serialize_executable
from jax.experimental.compilation_cache import compilation_cache

from cnnjax.ops.fast import native

#: Bumped when the file layout changes.
FORMAT = 1
SUFFIX = ".jaxexe"
_TMP_PREFIX = ".tmp-"
#: The folder's size limit: after a save, the least recently used files (by modification time, which a load
#: refreshes) are deleted until the folder fits. Every code change gives new keys, so files would pile up.
MAX_FOLDER_BYTES = 2 << 30

_folder: str | None = None
_max_bytes = MAX_FOLDER_BYTES
#: The run this process is in: the leading program's file, the followers its ``.next`` file lists, those
#: obtained since (file names), and the followers being preloaded (path -> Future of ``_deserialize``).
_run: dict = {"leader": None, "recorded": [], "seen": [], "preloads": {}}
NEXT_SUFFIX = ".next"


def set_folder(folder: str | None, max_bytes: int = MAX_FOLDER_BYTES) -> None:
    """Keep compiled programs in ``folder`` (created on the first write), at most ``max_bytes`` of them (least
    recently used deleted first); None turns the cache off."""
    global _folder, _max_bytes
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes={max_bytes!r} must be a positive number of bytes")
    _folder = None if folder is None else os.path.abspath(os.path.expanduser(folder))
    _max_bytes = max_bytes
    _run.update(leader=None, recorded=[], seen=[], preloads={})


def get_folder() -> str | None:
    """The folder set by :func:`set_folder`, or None when the cache is off."""
    return _folder


def settings() -> dict:
    """This process's settings, as :func:`set_folder`'s keyword arguments (for the processes it starts)."""
    return {"folder": _folder, "max_bytes": _max_bytes}


def cached_jit(fn, *, key: dict, donate_argnums=(), compiler_options: dict | None = None, name: str | None = None,
               leads: bool = False):
    """``jax.jit(fn, donate_argnums=..., compiler_options=...)`` whose compiled program for each argument
    signature is saved to and loaded from the cache folder. Plain ``jax.jit`` when the cache is off. ``leads``:
    this program starts a run (the programs obtained after it are recorded, and preloaded with it next time)."""
    if not isinstance(key, dict):
        raise TypeError(f"key={key!r} must be a dict describing what fn closes over (e.g. train.program_key)")
    if not isinstance(leads, bool):
        raise TypeError(f"leads={leads!r} must be True (this program starts a run) or False")
    jitted = jax.jit(fn, donate_argnums=donate_argnums, compiler_options=compiler_options)
    if _folder is None or jax.process_count() > 1 or jax.device_count() > 1:
        return jitted
    description = {"name": name or _qualified_name(fn), "key": key, "donate_argnums": list(_tuple(donate_argnums)),
                   "compiler_options": compiler_options or {}}
    return CachedJit(jitted, _folder, description, leads)


class CachedJit:
    """A jitted function whose compiled programs come from (or go to) ``folder``; see :func:`cached_jit`."""

    def __init__(self, jitted, folder: str, description: dict, leads: bool = False):
        self._jitted, self._folder, self._description, self._leads = jitted, folder, description, leads
        self._by_signature: dict = {}
        self._last = self._last_signature = None
        #: How the programs of this function were obtained, in call order: "loaded", "preloaded" (loaded in the
        #: background while the run's leading program loaded), "compiled", "recompiled" (a damaged file) or
        #: "compiled, not saved" (its output tree cannot be pickled, or the folder cannot be written).
        self.events: list[str] = []

    def __call__(self, *args):
        if self._last is not None:
            try:
                return self._last(*args)
            except TypeError:  # another signature? JAX checks tree and types before it runs (or donates) anything
                signature = _signature(args)
                if signature == self._last_signature:
                    raise
        else:
            signature = _signature(args)
        compiled = self._by_signature.get(signature)
        if compiled is None:
            compiled = self._by_signature[signature] = self._load_or_compile(args, signature)
        self._last, self._last_signature = compiled, signature
        return compiled(*args)

    def path_for(self, *args) -> str:
        """The file that holds (or will hold) the program for these arguments."""
        return self._path(_signature(args))

    def _path(self, signature) -> str:
        description = {**self._description, "arguments": _describe(signature), "code": code_fingerprint(),
                       "environment": environment_fingerprint()}
        digest = hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()
        return os.path.join(self._folder, f"{self._description['name']}-{digest[:32]}{SUFFIX}")

    def _load_or_compile(self, args, signature):
        path = self._path(signature)
        if self._leads:
            _start_run(path)
        else:
            _record_follower(path)
        in_tree = jax.tree_util.tree_structure((args, {}))
        statics = _static_objects(in_tree)
        preload = _run["preloads"].pop(path, None)
        if preload is not None or os.path.exists(path):
            try:
                parts = preload.result() if preload is not None else _deserialize(_read(path))
                compiled = _assemble(parts, in_tree, statics)
                _touch(path)
                self.events.append("loaded" if preload is None else "preloaded")
                return compiled
            except Exception as e:  # noqa: BLE001 - any damage: say so, compile again, overwrite
                print(f"cnnjax: compiled program {path} cannot be used ({type(e).__name__}: {e}); compiling it "
                      "again", file=sys.stderr, flush=True)
                event = "recompiled"
        else:
            event = "compiled"
        compiled = _compile_past_persistent_cache(self._jitted.trace(*args).lower())
        try:
            _save(path, compiled, statics)
            _prune(self._folder, _max_bytes, keep=path)
        except (pickle.PicklingError, TypeError, AttributeError, ValueError, NotImplementedError, OSError) as e:
            print(f"cnnjax: compiled program of {self._description['name']} not saved ({type(e).__name__}: {e})",
                  file=sys.stderr, flush=True)
            event = "compiled, not saved"
        self.events.append(event)
        return compiled


def _compile_past_persistent_cache(lowered):
    """``lowered.compile()`` with JAX's persistent compilation cache off for this one compile: XLA:CPU (jaxlib
    0.10.2) serializes an executable that was itself loaded from a serialized one without some of its kernels
    ("Function ... not found" when the copy runs; tested), so only a fresh compile may be saved here."""
    if not jax.config.jax_enable_compilation_cache:
        return lowered.compile()
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    try:
        return lowered.compile()
    finally:
        jax.config.update("jax_enable_compilation_cache", True)
        compilation_cache.reset_cache()


def _save(path: str, compiled, statics: list) -> None:
    """Write ``sha256(body) + newline + body`` atomically; body = pickle of (executable, output tree)."""
    payload, _, out_tree = serialize_executable.serialize(compiled)
    ids = {id(obj): i for i, obj in enumerate(statics)}

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ids.get(id(obj))

    tree_bytes = io.BytesIO()
    _Pickler(tree_bytes).dump(out_tree)
    body = pickle.dumps({"format": FORMAT, "executable": payload, "out_tree": tree_bytes.getvalue()})
    _write_atomically(path, hashlib.sha256(body).hexdigest().encode() + b"\n" + body)


def _write_atomically(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=_TMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _touch(path: str) -> None:
    """Mark a file as used now (its modification time orders :func:`_prune`)."""
    with contextlib.suppress(OSError):  # a read-only folder still serves its programs
        os.utime(path)


def _prune(folder: str, max_bytes: int, keep: str) -> None:
    """Delete the least recently used program files (and their ``.next`` files) until the folder holds at most
    ``max_bytes`` (never ``keep``), and temporary files over an hour old (a process killed while it wrote one)."""
    files, hour_ago = [], time.time() - 3600
    for path in (os.path.join(folder, name) for name in os.listdir(folder)):
        if os.path.basename(path).startswith(_TMP_PREFIX) and os.stat(path).st_mtime < hour_ago:
            _unlink_if_there(path)
        elif path.endswith(NEXT_SUFFIX) and not os.path.exists(path[: -len(NEXT_SUFFIX)] + SUFFIX):
            _unlink_if_there(path)  # its program was deleted (or never saved)
        elif path.endswith(SUFFIX):
            stat = os.stat(path)
            files.append((stat.st_mtime_ns, stat.st_size, path))
    total = sum(size for _, size, _ in files)
    for _, size, path in sorted(files):
        if total <= max_bytes:
            break
        if path != keep:
            _unlink_if_there(path)
            _unlink_if_there(_next_path(path))
            total -= size


def _unlink_if_there(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):  # another process removed it
        os.unlink(path)


def _read(path: str) -> dict:
    """The file's contents, after its checksum and format are checked."""
    with open(path, "rb") as f:
        checksum, _, body = f.read().partition(b"\n")
    if hashlib.sha256(body).hexdigest().encode() != checksum:
        raise ValueError("checksum mismatch")
    content = pickle.loads(body)
    if content.get("format") != FORMAT:
        raise ValueError(f"format {content.get('format')!r}, expected {FORMAT}")
    return content


def _deserialize(content: dict) -> tuple:
    """XLA's part of ``serialize_executable.deserialize_and_load`` (the slow part, and it needs neither tree):
    ``(content, loaded executable, flat argument infos, no_kwargs)``. It uses that module's private unpickler;
    the key holds jax's version, so another jax compiles anew (and a failure here is a damaged-file recompile).
    A program may call the C++ kernels (:mod:`cnnjax.ops.fast.native`): their FFI targets are registered first,
    as tracing the program would have done."""
    native.available()
    backend = jax.devices()[0].client
    unloaded, args_info_flat, no_kwargs = serialize_executable._JaxPjrtUnpickler(
        io.BytesIO(content["executable"]), backend, backend.devices()).load()
    return content, unloaded.load(), args_info_flat, no_kwargs


def _assemble(parts: tuple, in_tree, statics: list):
    """The rest of ``deserialize_and_load``: the ``Compiled`` for these arguments' tree, its output tree unpickled
    with the arguments' static objects."""
    content, loaded, args_info_flat, no_kwargs = parts

    class _Unpickler(pickle.Unpickler):
        def persistent_load(self, pid):
            return statics[pid]

    out_tree = _Unpickler(io.BytesIO(content["out_tree"])).load()
    return jax.stages.Compiled(loaded, [], in_tree.unflatten(args_info_flat), out_tree, no_kwargs=no_kwargs)


def _next_path(path: str) -> str:
    return path[: -len(SUFFIX)] + NEXT_SUFFIX


def _start_run(path: str) -> None:
    """``path`` (a leading program) starts a run: preload the followers its ``.next`` file lists, in order, in a
    background thread (a listed file that is gone is skipped; one that fails to load fails when it is used).
    The same leading program again before any follower (one initial state per seed, vmapped) is the same run."""
    if path == _run["leader"] and not _run["seen"]:
        return
    try:
        with open(_next_path(path)) as f:
            listed = json.load(f)
    except (OSError, ValueError):
        listed = []
    recorded = [n for n in listed if isinstance(n, str) and os.sep not in n] if isinstance(listed, list) else []
    folder = os.path.dirname(path)
    preloads = {os.path.join(folder, n): Future() for n in recorded if os.path.exists(os.path.join(folder, n))}
    _run.update(leader=path, recorded=recorded, seen=[], preloads=dict(preloads))  # the calls take theirs from it

    def preload():
        for file, future in preloads.items():
            try:
                future.set_result(_deserialize(_read(file)))
            except BaseException as e:  # noqa: BLE001 - reported by the call that uses this program
                future.set_exception(e)

    if preloads:
        # Not a daemon: Python joins it before shutting down, so a process that ends (say, on an error) while it
        # is inside XLA's deserialization waits for it rather than running C++ static destructors under it.
        threading.Thread(target=preload, name="cnnjax-preload").start()


def _record_follower(path: str) -> None:
    """Note ``path`` as obtained after the run's leading program; rewrite the leader's ``.next`` file when the
    programs obtained so far are not what it lists."""
    leader, name = _run["leader"], os.path.basename(path)
    if leader is None or name in _run["seen"]:
        return
    _run["seen"].append(name)
    if _run["seen"] != _run["recorded"][: len(_run["seen"])]:
        with contextlib.suppress(OSError):  # a read-only folder: no preloading next time, nothing else lost
            _write_atomically(_next_path(leader), json.dumps(_run["seen"]).encode())
        _run["recorded"] = list(_run["seen"])


def _static_objects(treedef) -> list:
    """The non-plain objects in the tree's node data (e.g. a TrainState's ``apply_fn`` and ``tx``), in a fixed
    order: the output tree refers to them by position, so that they need not be pickled."""
    found = []

    def visit(t):
        if t.num_nodes == 1 and t.num_leaves <= 1:
            return
        data = t.node_data()
        if data is not None and not _plain(data[1]):
            found.extend(data[1] if isinstance(data[1], tuple) else (data[1],))
        for child in t.children():
            visit(child)

    visit(treedef)
    return found


def _plain(value) -> bool:
    """Strings, numbers, None and tuples/lists/dicts of them: safe to describe by ``repr``."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    return False


def _structure(treedef) -> str:
    """The tree's node types and plain node data (dict keys, field names), without object addresses."""
    if treedef.num_nodes == 1 and treedef.num_leaves == 1:
        return "*"
    data = treedef.node_data()
    if data is None:
        return "None"
    kind, aux = data
    aux_text = repr(aux) if _plain(aux) else f"<{len(aux) if isinstance(aux, tuple) else 1} static>"
    return f"{kind.__module__}.{kind.__qualname__}{aux_text}({','.join(_structure(c) for c in treedef.children())})"


def _aval_text(x) -> str:
    aval = jax.typeof(x)
    sharding = getattr(x, "sharding", None)
    return f"{aval.str_short()}{' weak' if getattr(aval, 'weak_type', False) else ''} {sharding!r}"


def _signature(args):
    """``(tree structure, each leaf's type and sharding as text)``: which program these arguments need."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return treedef, tuple(_aval_text(x) for x in leaves)


def _describe(signature) -> dict:
    """The signature for the key: the tree without object addresses, the leaves' texts."""
    treedef, leaves = signature
    return {"structure": _structure(treedef), "leaves": list(leaves)}


@functools.lru_cache(maxsize=1)
def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(sorted({os.path.join(p, "") for r in roots for p in (os.path.abspath(r), os.path.realpath(r))}))


def _outside_installed_packages(path: str) -> bool:
    return not os.path.abspath(path).startswith(_installed_roots())


def code_fingerprint() -> str:
    """sha256 over the ``.py``, ``.cc`` and ``.h`` files (C++ that the code builds, :mod:`cnnjax.ops.fast.native`) of
    every top-level package (or module) loaded from outside the
    interpreter's and the installed packages' folders: all of its files, not only the imported ones."""
    roots = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file or not file.endswith(".py") or not _outside_installed_packages(file):
            continue
        top = sys.modules.get(module.__name__.partition(".")[0])
        top_file = getattr(top, "__file__", None) or file
        roots.add(os.path.dirname(top_file) if top_file.endswith("__init__.py") else top_file)
    return _hash_sources(tuple(sorted(roots)))


#: The files :func:`code_fingerprint` reads in a package's folders.
SOURCE_SUFFIXES = (".py", ".cc", ".h")


def _hash_sources(roots: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for root in roots:
        files = [root] if root.endswith(".py") else sorted(
            os.path.join(d, f) for d, _, names in os.walk(root) for f in names if f.endswith(SOURCE_SUFFIXES))
        for file in files:
            digest.update(file.encode() + b"\0")
            with open(file, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _distributions() -> str:
    """The installed distributions' metadata folders (``name-version.dist-info``) on ``sys.path``: their names
    carry the versions, and listing them is much quicker than reading every distribution's metadata."""
    names = set()
    for entry in sys.path:
        if os.path.isdir(entry or "."):
            names.update(f"{entry}/{n}" for n in os.listdir(entry or ".") if n.endswith((".dist-info", ".egg-info")))
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def environment_fingerprint() -> dict:
    """Installed distributions, jax's configuration, the JAX/XLA/CNNJAX variables, the backend's devices."""
    config = {k: repr(v) for k, v in sorted(jax.config.values.items())}
    variables = {k: v for k, v in sorted(os.environ.items()) if k.startswith(("JAX_", "XLA_", "CNNJAX_"))}
    devices = [(d.platform, d.device_kind, d.id) for d in jax.devices()]
    backend = jax.devices()[0].client
    return {"distributions": _distributions(), "python": sys.version, "jax_config": config, "variables": variables,
            "backend": [backend.platform, backend.platform_version], "devices": devices}


def _qualified_name(fn) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}".replace("<", "").replace(">", "")


def _tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)
