"""BatchNorm's per-channel statistics and normalization with the per-channel sums in C++ (``cc/channel_sums.cc``).

XLA:CPU lowers a sum over every axis but the channels to a reduce-window whose outputs each add their rows one
after another: in a ResNet-20 train step (batch 128, two cores) BatchNorm's 98 such sums took ~75 ms of a
~360 ms step. Six primitives carry BatchNorm's formulas here, each linear or bilinear, so that JAX derives
both modes and every order, and so that the *backward* pass's sums (the transposes of the broadcasts) are the
C++ loops too:

- ``channel_sum(A)[c] = sum_r A[r, c]`` (C++; its transpose is ``channel_broadcast``),
- ``channel_dot(A, B)[c] = sum_r A[r, c] B[r, c]`` (C++; reads both arrays once, the product is never written;
  transposes ``channel_scale(B, ct)``, ``channel_scale(A, ct)``),
- ``channel_scale(A, v)[r, c] = A[r, c] v[c]`` (XLA's multiply, fused with its neighbours; transposes
  ``channel_scale(ct, v)`` and ``channel_dot(ct, A)``),
- ``channel_broadcast(v)[r, c] = v[c]`` (XLA's broadcast; its transpose is ``channel_sum``),
- ``centered_scale(X, m, v)[r, c] = (X[r, c] - m[c]) v[c]`` (XLA's subtract and multiply, fused; linear in
  ``(X, m)`` and in ``v``: transposes ``channel_scale(ct, v)`` and ``-channel_sum`` of it, and
  ``centered_dot(ct, X, m)``),
- ``centered_dot(A, X, m)[c] = sum_r A[r, c] (X[r, c] - m[c])`` (C++; the same bits as ``channel_dot(A, X - m)``
  without writing ``X - m``: BatchNorm's backward pass no longer stores or reads a centred copy of every
  normalized array; transposes ``centered_scale(X, m, ct)`` and ``channel_scale(A, ct)`` with ``-channel_sum``).

Under ``vmap`` each falls back to its ``jax.numpy`` formula (the reference's reductions).
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from cnnjax.ops.fast import native


def applies(x) -> bool:
    """float32 with at least one axis besides the channels, and the library usable (:func:`native.usable`)."""
    return x.dtype == jnp.float32 and x.ndim >= 2 and x.size > 0 and native.usable()


def batch_statistics(x):
    """Per-channel ``mean = (1/m) sum x`` and ``var = max(0, (1/m) sum x^2 - mean^2)`` over every axis but the last
    (flax's fast variance), ``m`` the number of rows."""
    rows = x.size // x.shape[-1]
    mean = _sum_p.bind(x) / rows
    mean_of_squares = _dot_p.bind(x, x) / rows
    return mean, jnp.maximum(0.0, mean_of_squares - mean * mean)


def normalize(x, mean, var, scale, bias, epsilon):
    """``(x - mean) * (scale / sqrt(var + epsilon)) + bias`` per channel (``scale`` / ``bias`` may be None)."""
    mul = jax.lax.rsqrt(var + epsilon)
    if scale is not None:
        mul = mul * scale
    y = _centered_scale_p.bind(x, mean, mul)
    return y if bias is None else y + _broadcast_p.bind(bias, shape=x.shape)


# ----------------------------------------------------------------------------------------------- primitives

def _zero_or(ct, aval, fn):
    return ad.Zero(aval) if isinstance(ct, ad.Zero) else fn()


def _rows_axes(a):
    return tuple(range(a.ndim - 1))


_sum_p = Primitive("channel_sum")
_dot_p = Primitive("channel_dot")
_scale_p = Primitive("channel_scale")
_broadcast_p = Primitive("channel_broadcast")
for _p in (_sum_p, _dot_p, _scale_p, _broadcast_p):
    _p.def_impl(native.jit_impl(_p))

_sum_p.def_abstract_eval(lambda a: jax.core.ShapedArray(a.shape[-1:], a.dtype))
_dot_p.def_abstract_eval(lambda a, b: jax.core.ShapedArray(a.shape[-1:], a.dtype))
_scale_p.def_abstract_eval(lambda a, v: jax.core.ShapedArray(a.shape, a.dtype))
_broadcast_p.def_abstract_eval(lambda v, *, shape: jax.core.ShapedArray(shape, v.dtype))

mlir.register_lowering(_sum_p, native.ffi_lowering("cnnjax_channel_sum"), platform="cpu")
mlir.register_lowering(_dot_p, native.ffi_lowering("cnnjax_channel_dot"), platform="cpu")
mlir.register_lowering(_scale_p, mlir.lower_fun(lambda a, v: a * v, multiple_results=False))
mlir.register_lowering(_broadcast_p, mlir.lower_fun(lambda v, *, shape: jnp.broadcast_to(v, shape),
                                                    multiple_results=False))

ad.deflinear2(_sum_p, lambda ct, a: [_zero_or(ct, a.aval, lambda: _broadcast_p.bind(ct, shape=a.aval.shape))])
ad.deflinear2(_broadcast_p, lambda ct, v, *, shape: [_zero_or(ct, v.aval, lambda: _sum_p.bind(ct))])
ad.defbilinear(_dot_p, lambda ct, a, b: _scale_p.bind(b, ct), lambda ct, a, b: _scale_p.bind(a, ct))
ad.defbilinear(_scale_p, lambda ct, a, v: _scale_p.bind(ct, v), lambda ct, a, v: _dot_p.bind(ct, a))


_centered_scale_p = Primitive("centered_scale")
_centered_dot_p = Primitive("centered_dot")
for _p in (_centered_scale_p, _centered_dot_p):
    _p.def_impl(native.jit_impl(_p))
_centered_scale_p.def_abstract_eval(lambda x, m, v: jax.core.ShapedArray(x.shape, x.dtype))
_centered_dot_p.def_abstract_eval(lambda a, x, m: jax.core.ShapedArray(a.shape[-1:], a.dtype))
mlir.register_lowering(_centered_scale_p, mlir.lower_fun(lambda x, m, v: (x - m) * v, multiple_results=False))
mlir.register_lowering(_centered_dot_p, native.ffi_lowering("cnnjax_channel_centered_dot"), platform="cpu")


def _jvp_linear_in_one_and_a_pair(primitive, single, pair):
    """The JVP of a primitive linear in operand ``single`` and in the operands ``pair`` together: ``v`` and
    ``(x, m)`` of ``centered_scale(x, m, v)``, ``a`` and ``(x, m)`` of ``centered_dot(a, x, m)``."""
    def jvp(primals, tangents):
        terms = []
        if not isinstance(tangents[single], ad.Zero):
            terms.append(primitive.bind(*[tangents[i] if i == single else p for i, p in enumerate(primals)]))
        if not all(isinstance(tangents[i], ad.Zero) for i in pair):
            terms.append(primitive.bind(*[ad.instantiate_zeros(tangents[i]) if i in pair else p
                                          for i, p in enumerate(primals)]))
        return primitive.bind(*primals), functools.reduce(operator.add, terms)  # JAX asks only with a tangent
    return jvp


def _to_pair(ct_b, x, m):
    """Cotangents of ``x`` and ``m`` from ``ct_b``, that of ``x - m`` (None: a zero cotangent), None for an
    operand that is not being transposed."""
    if ct_b is None:
        return [ad.Zero(a.aval) if ad.is_undefined_primal(a) else None for a in (x, m)]
    return [ct_b if ad.is_undefined_primal(x) else None,
            -_sum_p.bind(ct_b) if ad.is_undefined_primal(m) else None]


def _centered_scale_transpose(ct, x, m, v):
    if ad.is_undefined_primal(v):
        return [None, None, _zero_or(ct, v.aval, lambda: _centered_dot_p.bind(ct, x, m))]
    return [*_to_pair(None if isinstance(ct, ad.Zero) else _scale_p.bind(ct, v), x, m), None]


def _centered_dot_transpose(ct, a, x, m):
    if ad.is_undefined_primal(a):
        return [_zero_or(ct, a.aval, lambda: _centered_scale_p.bind(x, m, ct)), None, None]
    return [None, *_to_pair(None if isinstance(ct, ad.Zero) else _scale_p.bind(a, ct), x, m)]


ad.primitive_jvps[_centered_scale_p] = _jvp_linear_in_one_and_a_pair(_centered_scale_p, single=2, pair=(0, 1))
ad.primitive_jvps[_centered_dot_p] = _jvp_linear_in_one_and_a_pair(_centered_dot_p, single=0, pair=(1, 2))
ad.primitive_transposes[_centered_scale_p] = _centered_scale_transpose
ad.primitive_transposes[_centered_dot_p] = _centered_dot_transpose


def _batched(formula):
    """A batching rule: ``formula`` on the operands with their batch axes moved to the front."""
    def rule(args, dims, **params):
        size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
        args = [jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)
                for a, d in zip(args, dims)]
        return formula(*args, **params), 0
    return rule


def _per_channel(v, ndim):
    """A batched (B, C) vector shaped to broadcast against a batched (B, ..., C) array of ``ndim`` axes."""
    return v.reshape(v.shape[0], *[1] * (ndim - 2), v.shape[-1])


batching.primitive_batchers[_sum_p] = _batched(lambda a: jnp.sum(a, _rows_axes(a)[1:]))
batching.primitive_batchers[_dot_p] = _batched(lambda a, b: jnp.sum(a * b, _rows_axes(a)[1:]))
batching.primitive_batchers[_scale_p] = _batched(lambda a, v: a * _per_channel(v, a.ndim))
batching.primitive_batchers[_broadcast_p] = _batched(
    lambda v, *, shape: jnp.broadcast_to(_per_channel(v, len(shape) + 1), (v.shape[0], *shape)))
batching.primitive_batchers[_centered_scale_p] = _batched(
    lambda x, m, v: (x - _per_channel(m, x.ndim)) * _per_channel(v, x.ndim))
batching.primitive_batchers[_centered_dot_p] = _batched(
    lambda a, x, m: jnp.sum(a * (x - _per_channel(m, x.ndim)), _rows_axes(a)[1:]))
