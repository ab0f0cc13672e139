"""Dense 2-D convolution as a direct loop in C++ (``cc/direct_conv.cc``), called through XLA's FFI on the CPU backend.

``Y[n, o, c] = sum_{t, i} X[n, S o + t - P, i] F[t, i, c]`` with the output channels ``c`` in vector registers
(16 floats) and a row of output pixels per block: no patch matrix, no layout change, one pass over ``X`` per
tap row. XLA:CPU's own convolution is an Eigen contraction that is slower on the small images and channel
counts of LeNet-5 and ResNet-20 (at batch 128 on two cores, forward: 3x3 16 -> 16 at 32x32 6.1 vs 4.3 ms,
64 -> 64 at 8x8 3.7 vs 2.9 ms), and its kernel gradient reads a transposed copy of the input.

Two primitives, both bilinear, so that JAX derives every order of derivative in both modes:

- ``direct_conv_forward(X, F)``: the conv. Transposed with respect to ``X`` (the input gradient): for stride 1
  the same loop over ``dY`` with the kernel rotated by 180 degrees and its channel axes swapped, padded
  ``k - 1 - P``; otherwise (or with ``C_in`` not a multiple of 16) the transpose of ``fallback``, the
  formulation the dispatch takes without this module. With respect to ``F``: the kernel gradient below.
- ``direct_conv_kernel_gradient(X, dY)``: ``dF[t, i, c] = sum_{n, o} X[n, S o + t - P, i] dY[n, o, c]``, over
  images split in ranges fixed by ``N`` (the sum's order does not depend on the thread count). Its transposes:
  the forward (with respect to ``dY``) and ``fallback``'s input gradient (with respect to ``X``).

Under ``vmap`` a batched input with an unbatched kernel folds into the batch axis; otherwise (a kernel per
seed) the loop runs once per element (``lax.map``).

The library is built by :mod:`.native` (C++ in ``cc/direct_conv.cc``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from cnnjax.ops.fast import native

#: Output channels per vector register: C_out (and, for the stride-1 input gradient, C_in) a multiple of it.
LANES = 16
#: At most this many ``C_in * C_out``: with wider kernels on small images XLA's conv is the faster (fwd + both
#: gradients, batch 8, two cores, ms XLA / C++: 3x3 256 -> 256 at 14x14 34 / 36, 512 -> 512 at 7x7 37 / 45,
#: 64 -> 128 stride 2 at 56x56 21 / 25; but 64 -> 64 at 56x56 37 / 30 and every LeNet-5 / ResNet-20 conv faster).
MAX_CHANNEL_PRODUCT = 64 * 64


# ----------------------------------------------------------------------------------------------- the dispatch


def applies(x_shape, kernel_shape, strides, pads, dilations, groups, dtype) -> bool:
    """Dense 2-D, undilated, float32, zero padding >= 0, ``C_out`` a multiple of :data:`LANES`, ``C_in * C_out``
    at most :data:`MAX_CHANNEL_PRODUCT`, and the library usable (:func:`native.usable`)."""
    if len(x_shape) != 4 or groups != 1 or any(d != 1 for d in dilations) or dtype != jnp.float32:
        return False
    if kernel_shape[-1] % LANES or min(*x_shape, *kernel_shape) == 0 or any(lo < 0 or hi < 0 for lo, hi in pads):
        return False
    if kernel_shape[-2] * kernel_shape[-1] > MAX_CHANNEL_PRODUCT:
        return False
    if any(n + lo + hi < k for n, k, (lo, hi) in zip(x_shape[1:3], kernel_shape[:2], pads)):
        return False
    return native.usable()


def direct_conv(x, kernel, strides, pads, fallback, reference):
    """``conv(x, kernel)`` (NHWC, HWIO, ``strides``, zero ``pads`` (lo, hi) pairs) by the C++ loop.

    ``fallback(x, kernel)`` is the same conv by another formulation (for the transposes the library does not
    serve); ``reference(x, kernel, strides, pads)`` a dense conv of any strides and padding (for the input
    gradient's own fallback)."""
    return _forward_p.bind(x, kernel, strides=tuple(strides), pads=tuple(map(tuple, pads)), fallback=fallback,
                           reference=reference)


# ----------------------------------------------------------------------------------------------- primitives

def _fold_or_map(primitive):
    """vmap: a batched first operand alone folds into the image axis; anything else maps one element at a time."""
    def rule(args, dims, **params):
        (x, other), (x_dim, other_dim) = args, dims
        if other_dim is None and primitive is _forward_p:
            x = jnp.moveaxis(x, x_dim, 0)
            y = primitive.bind(x.reshape(-1, *x.shape[2:]), other, **params)
            return y.reshape(*x.shape[:2], *y.shape[1:]), 0
        size = x.shape[x_dim] if x_dim is not None else other.shape[other_dim]
        args = [jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)
                for a, d in zip(args, dims)]
        return lax.map(lambda pair: primitive.bind(*pair, **params), tuple(args)), 0
    return rule


def _attributes(*, strides, pads, **_):
    return dict(sh=strides[0], sw=strides[1], pt=pads[0][0], pl=pads[1][0])


def _forward_shape(x, kernel, *, strides, pads, **_):
    spatial = [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(x.shape[1:3], kernel.shape[:2], strides, pads)]
    return jax.core.ShapedArray((x.shape[0], *spatial, kernel.shape[-1]), x.dtype)


def _kernel_gradient_shape(x, dy, *, window, **_):
    return jax.core.ShapedArray((*window, x.shape[-1], dy.shape[-1]), x.dtype)


def _vjp_of(fn, primal_aval, cotangent):
    """The transpose of the linear ``fn`` applied to ``cotangent`` (its primal output is dead code)."""
    _, vjp = jax.vjp(fn, jnp.zeros(primal_aval.shape, primal_aval.dtype))
    return vjp(cotangent)[0]


def _input_gradient(dy, x, kernel, *, strides, pads, fallback, reference):
    """``dX = conv_1(dY, rot180(F) with C_in and C_out swapped)``, padded ``k - 1 - P``, for stride 1; else the
    transpose of ``fallback``."""
    if isinstance(dy, ad.Zero):
        return ad.Zero(x.aval)
    window, c_in = kernel.shape[:2], x.aval.shape[-1]
    back_pads = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(window, pads))
    if (all(s == 1 for s in strides) and c_in % LANES == 0 and dy.dtype == jnp.float32
            and all(lo >= 0 and hi >= 0 for lo, hi in back_pads)):
        rotated = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
        return direct_conv(dy, rotated, (1, 1), back_pads,
                           functools.partial(reference, strides=(1, 1), pads=back_pads), reference)
    return _vjp_of(lambda x: fallback(x, kernel), x.aval, dy)


def _kernel_gradient(dy, x, kernel, *, strides, pads, fallback, reference):
    if isinstance(dy, ad.Zero):
        return ad.Zero(kernel.aval)
    return _kernel_gradient_p.bind(x, dy, window=kernel.aval.shape[:2], strides=strides, pads=pads, fallback=fallback,
                                   reference=reference)


def _kernel_gradient_input_transpose(df, x, dy, *, window, strides, pads, fallback, reference):
    if isinstance(df, ad.Zero):
        return ad.Zero(x.aval)
    return _vjp_of(lambda x: fallback(x, df), x.aval, dy)


def _kernel_gradient_output_transpose(df, x, dy, *, window, strides, pads, fallback, reference):
    if isinstance(df, ad.Zero):
        return ad.Zero(dy.aval)
    return direct_conv(x, df, strides, pads, fallback, reference)


_forward_p = Primitive("direct_conv_forward")
_forward_p.def_impl(native.jit_impl(_forward_p))
_forward_p.def_abstract_eval(_forward_shape)
mlir.register_lowering(_forward_p, native.ffi_lowering("cnnjax_direct_conv_forward", _attributes), platform="cpu")
ad.defbilinear(_forward_p, _input_gradient, _kernel_gradient)
batching.primitive_batchers[_forward_p] = _fold_or_map(_forward_p)

_kernel_gradient_p = Primitive("direct_conv_kernel_gradient")
_kernel_gradient_p.def_impl(native.jit_impl(_kernel_gradient_p))
_kernel_gradient_p.def_abstract_eval(_kernel_gradient_shape)
mlir.register_lowering(_kernel_gradient_p, native.ffi_lowering("cnnjax_direct_conv_kernel_gradient", _attributes),
                       platform="cpu")
ad.defbilinear(_kernel_gradient_p, _kernel_gradient_input_transpose, _kernel_gradient_output_transpose)
batching.primitive_batchers[_kernel_gradient_p] = _fold_or_map(_kernel_gradient_p)
