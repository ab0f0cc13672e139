"""Model summary: per layer the output shape, parameters, FLOPs and receptive field; totals.

Nothing is computed on real data: the model is traced abstractly (``jax.eval_shape``) while every
module call is intercepted (``flax.linen.intercept_methods``). A row is a module that owns parameters
or has no sub-modules (convs, dense, BatchNorm, pooling).

- Parameters: the module's own ``params`` (sub-modules have their own rows); BatchNorm statistics are
  reported separately (``batch_stats`` total).
- FLOPs per example, a multiply-add counted as 2 (:mod:`cnnjax.ops.arithmetic`): convolutions
  ``prod(out) K (2 M prod(k) / g + 1)``, dense ``m (2 n + 1)``, separable ``2 prod(out) (|depthwise| + |pointwise|)``,
  locally connected ``2 |kernel|``, other kernels ``2 prod(out) |kernel|``;
  BatchNorm and other scale-and-shift layers ``2`` and pooling ``prod(window)`` per output value, the RBF
  output ``3 n`` per unit; activations and residual additions are not counted.
  Deformable convs count their main and offset convs, not the bilinear sampling.
- Receptive field (seeds 001/004, :func:`cnnjax.ops.arithmetic.receptive_field`): ``r = r_in + D (M - 1) j_in``,
  ``j = j_in S`` along the height axis, following the data path; where branches merge (residual add,
  Inception concat) the largest field among the branches of that spatial size is taken; after a global
  pool, a flatten or a dense layer it is the whole input.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.ops import arithmetic


@dataclasses.dataclass(frozen=True)
class LayerSummary:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    flops: int
    receptive_field: int | None  # None: the whole input


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    layers: tuple[LayerSummary, ...]
    total_params: int
    total_batch_stats: int
    total_flops: int

    def table(self) -> str:
        header = ("layer", "type", "output shape", "params", "FLOPs", "RF")
        rows = [
            (
                s.name,
                s.kind,
                "x".join(str(d) for d in s.output_shape[1:]),
                f"{s.params:,}",
                f"{s.flops:,}",
                "all" if s.receptive_field is None else str(s.receptive_field),
            )
            for s in self.layers
        ]
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

        def line(cells):
            return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        rule = "-" * len(line(header))
        inp = "x".join(str(d) for d in self.input_shape[1:])
        out = [f"input {inp}", line(header), rule, *(line(r) for r in rows), rule]
        out.append(f"total params: {self.total_params:,}   (BatchNorm statistics: {self.total_batch_stats:,})")
        out.append(f"total FLOPs per example: {self.total_flops:,}   (multiply-add = 2)")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def _pair(v, default):
    if v is None:
        return default
    if isinstance(v, int):
        return v
    v = tuple(v)
    return int(v[0]) if v else default


def _own_arrays(tree):
    return {k: v for k, v in tree.items() if not hasattr(v, "items")}


def _subtree(tree, path):
    for name in path:
        if not hasattr(tree, "items") or name not in tree:
            return {}
        tree = tree[name]
    return tree


def _geometry(module) -> tuple[int, int, int] | None:
    """(kernel, stride, dilation) along the height axis, or None for layers that do not slide a window."""
    name = type(module).__name__
    if name in ("Dense", "GlobalAvgPool", "GlobalMaxPool", "EuclideanRBF"):
        return None
    kernel = getattr(module, "kernel_size", None) or getattr(module, "window", None)
    if kernel is None:
        return (1, 1, 1)  # elementwise (BatchNorm, ...)
    k = _pair(kernel, 1)
    stride = getattr(module, "strides", None)
    if stride is None:
        stride = getattr(module, "stride", None)
    if stride is None:
        stride = k if "Pool" in name else 1
    d = _pair(getattr(module, "dilation", None) or getattr(module, "kernel_dilation", None), 1)
    return k, _pair(stride, 1), d


def _flops(module, own, in_shape, out_shape) -> int:
    name = type(module).__name__
    per_example = out_shape[1:]
    out_values = math.prod(per_example)
    spatial = per_example[:-1]
    if "kernel" in own:
        kernel = own["kernel"]
        has_bias = int("bias" in own)
        if name == "Dense":
            return arithmetic.dense_flops(kernel.shape[0], kernel.shape[1], bool(has_bias))
        if name == "Conv" and kernel.ndim == len(spatial) + 2 and spatial:
            return arithmetic.conv_flops(
                kernel.shape[-2] * module.groups,
                kernel.shape[-1],
                kernel.shape[:-2],
                spatial,
                groups=module.groups,
                use_bias=bool(has_bias),
                ndim=len(spatial),
            )
        if name == "LocallyConnected":
            return 2 * math.prod(kernel.shape) + has_bias * out_values
        positions = math.prod(spatial) if spatial else 1
        return 2 * positions * math.prod(kernel.shape) + has_bias * out_values
    if "depthwise_kernel" in own and "pointwise_kernel" in own:  # depthwise k x k, then 1x1 (seed 004)
        positions = math.prod(spatial) if spatial else 1
        weights = math.prod(own["depthwise_kernel"].shape) + math.prod(own["pointwise_kernel"].shape)
        return 2 * positions * weights + int("bias" in own) * out_values
    if name == "EuclideanRBF":
        return 3 * in_shape[-1] * out_values  # subtract, square, accumulate
    if name == "BatchNorm" or own:
        return 2 * out_values  # scale and shift (BatchNorm at inference, LeNet's trainable subsampling)
    if "Pool" in name:
        window = getattr(module, "window", None)
        if window is not None:
            return out_values * (window**2 if isinstance(window, int) else math.prod(window))
    return 0


def summarize(model: nn.Module, input_shape, *, train: bool = False, dtype=jnp.float32) -> ModelSummary:
    """Summarise ``model`` for one input of ``input_shape`` (``(H, W, C)`` or ``(1, H, W, C)``)."""
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) == 3:
        input_shape = (1, *input_shape)
    if len(input_shape) != 4:
        raise ValueError(f"input_shape={input_shape} must be (H, W, C) or (N, H, W, C)")
    records: list[dict] = []
    stack: list[dict] = []
    # Receptive-field state of arrays seen so far: id(array) -> (rf, jump, spatial shape); the arrays are
    # kept alive in ``keep`` so their ids cannot be reused during the trace.
    tracked: dict[int, tuple[int, int, tuple[int, ...]] | None] = {}
    keep: list = []
    done: list[tuple[int, int, tuple[int, ...]]] = []
    spatial_in = input_shape[1:3]

    def resolve(x):
        """State of an array entering a module; an array made outside modules (activation, add, concat)
        takes the largest field among finished outputs of its spatial size (memoised for its siblings)."""
        if id(x) in tracked:
            return tracked[id(x)]
        shape = tuple(getattr(x, "shape", ()))
        state = None
        if len(shape) == 4:
            same = [t for t in done if t[2] == shape[1:3]]
            if same:
                state = max(same, key=lambda t: t[0])
            elif done:  # a new size made outside modules (e.g. LeNet's padding to 32x32): field unchanged
                state = (done[-1][0], done[-1][1], shape[1:3])
            elif shape[1:3] != spatial_in:
                state = (1, 1, shape[1:3])
            else:
                state = (1, 1, spatial_in)
        tracked[id(x)] = state
        keep.append(x)
        return state

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        module = context.module
        path = tuple(module.scope.path) if module.scope is not None else ()
        record = {"path": path, "module": module, "children": 0}
        records.append(record)
        if stack:
            stack[-1]["children"] += 1
        x = args[0] if args else None
        record["in_shape"] = tuple(getattr(x, "shape", ()))
        state_in = resolve(x)
        stack.append(record)
        try:
            out = next_fun(*args, **kwargs)
        finally:
            stack.pop()
        out_shape = tuple(getattr(out, "shape", ()))
        record["out_shape"] = out_shape
        geometry = _geometry(module)
        if record["children"]:  # a composite: the largest field among its finished parts of this size
            same = [t for t in done if len(out_shape) == 4 and t[2] == out_shape[1:3]]
            state = max(same, key=lambda t: t[0]) if same and state_in is not None else None
        elif state_in is None or geometry is None or len(out_shape) != 4:
            state = None
        else:
            k, st, d = geometry
            r, j, _ = state_in
            state = (r + (arithmetic.effective_kernel_size(k, d) - 1) * j, j * st, out_shape[1:3])
        tracked[id(out)] = state
        keep.append(out)
        if state is not None:
            done.append(state)
        record["rf"] = None if state is None else state[0]
        return out

    def init(x):
        tracked[id(x)] = (1, 1, spatial_in)
        keep.append(x)
        with nn.intercept_methods(interceptor):
            return model.init(jax.random.PRNGKey(0), x, train=train)

    variables = jax.eval_shape(init, jax.ShapeDtypeStruct(input_shape, dtype))
    params = variables.get("params", {})

    rows = []
    for record in records:
        module, path = record["module"], record["path"]
        if not path or "out_shape" not in record:
            continue
        own = _own_arrays(_subtree(params, path))
        n_params = sum(math.prod(v.shape) for v in own.values())
        if record["children"] and not n_params:
            continue
        rows.append(
            LayerSummary(
                name="/".join(path),
                kind=type(module).__name__,
                output_shape=record["out_shape"],
                params=n_params,
                flops=_flops(module, own, record["in_shape"], record["out_shape"]),
                receptive_field=record["rf"],
            )
        )
    total_params = sum(math.prod(v.shape) for v in jax.tree_util.tree_leaves(params))
    total_stats = sum(math.prod(v.shape) for v in jax.tree_util.tree_leaves(variables.get("batch_stats", {})))
    out = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False), variables, jax.ShapeDtypeStruct(input_shape, dtype)
    )
    return ModelSummary(
        input_shape=input_shape,
        output_shape=tuple(getattr(out, "shape", ())),
        layers=tuple(rows),
        total_params=total_params,
        total_batch_stats=total_stats,
        total_flops=sum(r.flops for r in rows),
    )
