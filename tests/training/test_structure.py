"""The training code stays readable: no function in cnnjax/training over ~60 lines or ~6 parameters."""

import ast
import pathlib

import pytest

TRAINING = pathlib.Path(__file__).resolve().parents[2] / "cnnjax" / "training"
MAX_LINES, MAX_PARAMS = 60, 6
# Functions allowed over the limits (none now); the test fails once one of them fits, so that this list only shrinks.
KNOWN_OVER = {"lines": set(), "parameters": set()}


def _functions():
    for path in sorted(TRAINING.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(TRAINING).as_posix()} {node.name}", node


def _num_params(node) -> int:
    """Parameters a caller must pass or may pass by position; keyword-only options with a default are not counted."""
    a = node.args
    required_keywords = [x for x, d in zip(a.kwonlyargs, a.kw_defaults) if d is None]
    names = [x.arg for x in a.posonlyargs + a.args + required_keywords] + [x.arg for x in (a.vararg,) if x]
    return len([n for n in names if n not in ("self", "cls")])


@pytest.mark.parametrize("limit, measure", [(MAX_LINES, lambda n: n.end_lineno - n.lineno + 1),
                                            (MAX_PARAMS, _num_params)], ids=["lines", "parameters"])
def test_training_functions_are_short(request, limit, measure):
    kind = request.node.callspec.id
    too_big = {name: measure(node) for name, node in _functions() if measure(node) > limit}
    assert set(too_big) <= KNOWN_OVER[kind], f"over {limit} {kind}: {too_big}"
    fitting = KNOWN_OVER[kind] - set(too_big)
    assert not fitting, f"{fitting} now fit; remove them from KNOWN_OVER"
