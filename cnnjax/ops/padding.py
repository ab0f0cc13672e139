"""Padding: VALID, SAME, FULL and explicit (lo, hi) pairs; fill by zeros, edge, reflection or wrap.

Seed 000 ("Отступ / Padding"): pad with zeros (the most popular) or with the nearest pixel; kinds Same
(output size = input size), Valid (no padding), Full (output larger than the input). Seed 004: SAME
frames are zeros or a mirror reflection of the picture. Circular (wrap) padding completes the set.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from cnnjax.ops.args import is_int

PADDING_NAMES = ("VALID", "SAME", "FULL")
PAD_MODES = {"constant": "constant", "edge": "edge", "reflect": "reflect", "wrap": "wrap"}


def normalize_padding(padding, window: Sequence[int], dilation: Sequence[int]) -> list[tuple[int, int]]:
    """Turn a padding spec into one (lo, hi) pair per spatial axis (seed 000).

    VALID: ``(0, 0)``. SAME pads ``D (M - 1)`` in total (``lo = total // 2``, ``hi = total - lo``), which keeps
    the size at stride 1 and gives ``ceil(H / S)`` at stride ``S`` (like PyTorch's ``padding='same'`` and an
    explicit ``padding=(M - 1) / 2``; TensorFlow's SAME pads less at stride > 1, shifting the grid).
    FULL pads ``D (M - 1)`` on both sides so every partial overlap is produced:
    ``H_out = H + D (M - 1)`` at stride 1.
    Explicit: an int (all sides), one int per axis, or one ``(lo, hi)`` pair per axis; with one
    spatial axis a bare ``(lo, hi)`` pair is accepted too.
    """
    nd = len(window)
    effective = [d * (k - 1) for k, d in zip(window, dilation)]
    if isinstance(padding, str):
        name = padding.upper()
        if name == "VALID":
            return [(0, 0)] * nd
        if name == "SAME":
            return [(e // 2, e - e // 2) for e in effective]
        if name == "FULL":
            return [(e, e) for e in effective]
        raise ValueError(
            f"padding={padding!r} is unknown; allowed: {', '.join(PADDING_NAMES)}, an int or (lo, hi) pairs"
        )
    if is_int(padding):
        pairs = [(int(padding), int(padding))] * nd
    elif (
        nd == 1
        and isinstance(padding, Sequence)
        and len(padding) == 2
        and all(is_int(v) for v in padding)
    ):
        pairs = [(int(padding[0]), int(padding[1]))]
    elif isinstance(padding, Sequence) and len(padding) == nd:
        pairs = []
        for p in padding:
            if is_int(p):
                pairs.append((int(p), int(p)))
            elif isinstance(p, Sequence) and len(p) == 2 and all(is_int(v) for v in p):
                pairs.append((int(p[0]), int(p[1])))
            else:
                raise ValueError(f"padding={padding!r} is malformed: each axis needs an int or a (lo, hi) pair")
    else:
        raise ValueError(
            f"padding={padding!r} is malformed: use {', '.join(PADDING_NAMES)}, an int, "
            f"or {nd} ints / (lo, hi) pairs (one per spatial axis)"
        )
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise ValueError(f"padding={padding!r} must not be negative")
    return pairs


def check_pad_mode(mode) -> str:
    """Validate a pad_mode name."""
    if not isinstance(mode, str) or mode not in PAD_MODES:
        raise ValueError(f"pad_mode={mode!r} is unknown; allowed: {', '.join(PAD_MODES)}")
    return mode


def pad(x, pads: Sequence[tuple[int, int]], mode: str = "constant", value=0.0):
    """Pad the spatial axes of an ``(N, *spatial, C)`` array (seeds 000, 004).

    For one axis with ``x = [x_0 .. x_{H-1}]`` and index ``i`` in ``[-lo, H + hi)`` the padded value is:
    "constant" ``value`` outside, "edge" (nearest pixel) ``x[clip(i, 0, H - 1)]``, "reflect" (mirror without
    repeating the edge pixel) ``x[-i]`` / ``x[2 (H - 1) - i]``, "wrap" (circular) ``x[i mod H]``.
    PyTorch's ``F.pad`` names: constant, replicate, reflect, circular.
    """
    check_pad_mode(mode)
    x = jnp.asarray(x)
    if len(pads) != x.ndim - 2 or any(len(p) != 2 or p[0] < 0 or p[1] < 0 for p in pads):
        raise ValueError(
            f"pads={pads!r} must be {x.ndim - 2} non-negative (lo, hi) pairs for x.shape={x.shape} (N, *spatial, C)"
        )
    widths = [(0, 0), *[tuple(p) for p in pads], (0, 0)]
    if mode == "constant":
        return jnp.pad(x, widths, mode="constant", constant_values=value)
    return jnp.pad(x, widths, mode=PAD_MODES[mode])
