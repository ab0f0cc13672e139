"""Faster formulations of :mod:`cnnjax.ops` for XLA:CPU, and the one place that chooses among them.

The ops modules (``conv``, ``separable``, ``transpose``, ``pooling``) hold the reference formulation (the
lecture formula written with ``lax.conv_general_dilated`` / ``lax.reduce_window``) and ask this module
whether a faster formulation serves their arguments. Every choice is made at trace time from the backend,
the dtype and the static shapes:

============================  ==========================================  =================================
path (module)                 taken for                                   instead of the reference's
============================  ==========================================  =================================
``direct.direct_conv``        dense 2-D, float32, C_out a multiple of     XLA's conv (Eigen), its kernel
                              16, C_in C_out <= 4096, no dilation (C++    gradient's transposed input copy
                              loop through XLA's FFI; the kernel
                              gradient, and the stride-1 input gradient
                              where C_in is a multiple of 16, too; the
                              rest by the path below)
``banded.banded_gemm``        dense, stride 1, < 8 input channels         direct conv (LeNet-5 conv1)
``depthwise.depthwise_conv``  depthwise (groups = C_in), <= 49 taps       grouped conv, batch_group_count
``grouped.grouped_conv``      2 to 16 groups of > 1 channel               per-group GEMMs, batch_group_count
``grouped.block_diagonal``    the same with <= 32 channels, <= 8 per
                              group (one dense conv)
``strided.strided_conv``      dense, stride > 1, >= 8 input channels,     lhs-dilated conv in the input
                              no dilation (input gradient by phases)      gradient (zeros inserted)
``transpose.by_phases``       transposed conv, stride > 1                 lhs-dilated conv (zeros inserted)
``transpose.insert_zeros``    transposed conv, stride 1                   lhs-dilated conv in the gradient
``pool.tiled_max_pool``       max pool, stride = window, no padding       reduce_window + select_and_scatter
``materialize.materialized``  the input of the reference / grouped conv   its producers recomputed inside
                                                                          the kernel gradient's transpose
``channels`` (C++ sums)       BatchNorm's statistics and normalization,   reduce-windows (one add after
                              float32                                     another per output)
============================  ==========================================  =================================

Only on the CPU backend and for floating inputs: on GPU/TPU the reference runs (cuDNN / XLA), as no
benchmark on those backends has shown a fast path winning. The first row takes precedence: a conv it serves
uses the row that would otherwise serve it (or the reference) for what the C++ loop does not compute. Each fast
path has the reference's values, gradients (jacfwd == jacrev; the depthwise path is a custom VJP without
forward mode) and propagation of NaN / Inf in the input; ``tests/ops/test_fast_paths.py`` checks them
against the reference with :func:`reference_only`. ``benchmarks/run.py`` measures each against PyTorch.

A NaN or Inf in the *kernel* meets zeros that one formulation multiplies and another skips (padding, the
zeros a transposed conv inserts, a band's zeros), and ``0 * Inf = NaN``: there the fast paths give the
values of the zero-padded formula, which XLA:CPU's own algorithms do not agree on either (its dense conv
skips the zero padding that its grouped conv multiplies; the same backward convolution gives NaN at 30 of 72
pixels at the top level of a program and at none inside a ``lax.cond``). Choosing the reference at run time
for such kernels (``lax.cond`` on the kernel) was tried and dropped: a convolution inside a ``lax.cond``
branch runs ~7x slower on XLA:CPU (LeNet-5's second conv, fwd+bwd 16 -> 111 ms).
"""

from __future__ import annotations

import contextlib
import functools
import threading

import jax
import jax.numpy as jnp

from cnnjax.ops.fast import banded, channels, depthwise, direct, grouped, pool, strided, transpose
from cnnjax.ops.fast.materialize import materialized

_state = threading.local()


@contextlib.contextmanager
def reference_only():
    """Within this block (at trace time) every op uses its reference formulation: for tests and benchmarks.
    A function jitted inside keeps the formulation it was traced with."""
    previous = getattr(_state, "reference_only", False)
    _state.reference_only = True
    try:
        yield
    finally:
        _state.reference_only = previous


def _enabled(x) -> bool:
    return (
        not getattr(_state, "reference_only", False)
        and jax.default_backend() == "cpu"
        and jnp.issubdtype(x.dtype, jnp.floating)
    )


def conv(x, kernel, strides, pads, dilations, groups, reference):
    """``conv`` of ``x`` ``(N, *spatial, C_in)`` (not yet padded, ``pads`` zero (lo, hi) pairs) with
    ``kernel`` ``(*k, C_in / groups, C_out)``: by the fast formulation that serves these arguments, or
    ``reference(x, kernel, strides, pads, dilations, groups)``."""
    def by_reference(x, kernel):
        return reference(x, kernel, strides, pads, dilations, groups)

    if not _enabled(x):
        return by_reference(x, kernel)
    formulation = _conv_formulation(x.shape, kernel.shape, strides, pads, dilations, groups, reference,
                                    jnp.result_type(x, kernel))
    return formulation(x, kernel) if formulation else by_reference(materialized(x), kernel)


def _conv_formulation(x_shape, kernel_shape, strides, pads, dilations, groups, reference, dtype, materialize=True,
                      use_direct=True):
    """The fast formulation ``f(x, kernel)`` for a conv of these shapes and ``dtype``, or None (``materialize``:
    whether a formulation that takes the input through :func:`materialized` does so; False where it already has;
    ``use_direct``: whether the C++ loop may serve it)."""
    dense_reference = functools.partial(reference, strides=strides, pads=pads, dilations=dilations, groups=1)
    if use_direct and direct.applies(x_shape, kernel_shape, strides, pads, dilations, groups, dtype):
        other = _conv_formulation(x_shape, kernel_shape, strides, pads, dilations, groups, reference, dtype,
                                  materialize=False, use_direct=False) or dense_reference
        any_conv = functools.partial(reference, dilations=dilations, groups=1)
        return lambda x, kernel: direct.direct_conv(x, kernel, strides, pads, other, any_conv)
    if banded.applies(x_shape, kernel_shape, strides, pads, dilations, groups):
        return lambda x, kernel: banded.conv_few_input_channels(x, kernel, pads, dilations, dense_reference)
    if depthwise.applies(x_shape, kernel_shape, groups):
        return lambda x, kernel: depthwise.depthwise_conv(x, kernel, strides, pads, dilations)
    if grouped.applies(x_shape, kernel_shape, groups):
        part = (*x_shape[:-1], x_shape[-1] // groups), (*kernel_shape[:-1], kernel_shape[-1] // groups)
        dense = _conv_formulation(*part, strides, pads, dilations, 1, reference, dtype,
                                  materialize=False) or dense_reference
        if not grouped.block_diagonal_applies(x_shape, groups):
            return lambda x, kernel: grouped.grouped_conv(materialized(x), kernel, dense, groups)
        full = (*kernel_shape[:-2], x_shape[-1], kernel_shape[-1])
        one_conv = _conv_formulation(x_shape, full, strides, pads, dilations, 1, reference, dtype,
                                     materialize=False) or dense_reference
        per_group = functools.partial(grouped.grouped_conv, dense_conv=dense, groups=groups)
        return lambda x, kernel: grouped.block_diagonal_conv(materialized(x), kernel, groups, one_conv, per_group)
    if strided.applies(x_shape, strides, dilations, groups):
        nd = len(x_shape) - 2
        stride_1 = functools.partial(reference, strides=(1,) * nd, pads=((0, 0),) * nd, dilations=dilations, groups=1)
        take = materialized if materialize else (lambda x: x)
        return lambda x, kernel: strided.strided_conv(take(x), kernel, strides, pads, dense_reference, stride_1)
    return None


def conv_transpose(x, kernel, strides, pads, dilations, groups, reference, conv_reference):
    """Transposed conv as the convolution of ``x`` with ``kernel`` (already rotated, ``(*k, C_in / groups,
    C_out)``) after inserting ``S - 1`` zeros between pixels and padding ``pads`` (negative: cropping): the
    zeros by ``lax.pad`` then a stride-1 conv (``conv_reference(x, kernel, strides, pads, dilations, groups)``
    or its fast formulation), or ``reference(x, kernel, strides, pads, dilations, groups)`` (the zeros as
    ``lhs_dilation``)."""
    def by_reference(x, kernel):
        return reference(x, kernel, strides, pads, dilations, groups)

    if not _enabled(x):
        return by_reference(x, kernel)
    nd = x.ndim - 2
    ones, no_pads = (1,) * nd, ((0, 0),) * nd

    def stride_1(x, kernel, dilations):
        formulation = _conv_formulation(x.shape, kernel.shape, ones, no_pads, dilations, groups, conv_reference,
                                        jnp.result_type(x, kernel))
        return formulation(x, kernel) if formulation else conv_reference(x, kernel, ones, no_pads, dilations, groups)

    if any(s > 1 for s in strides):
        return transpose.by_phases(x, kernel, strides, pads, dilations, stride_1)
    return stride_1(transpose.insert_zeros(x, strides, pads), kernel, dilations)


def max_pool(x, window, stride, pads, reference):
    """Max pooling of ``x`` (``window``, ``stride``: one int per spatial axis; ``pads`` (lo, hi) pairs):
    tiled, or ``reference(x)``."""
    if _enabled(x) and pool.applies(x, window, stride, pads):
        return pool.tiled_max_pool(x, window)
    return reference(x)


def batch_statistics(x, reference):
    """BatchNorm's per-channel ``(mean, var)`` of ``x`` (float32): by :mod:`.channels`, or ``reference(x)``."""
    return channels.batch_statistics(x) if _enabled(x) and channels.applies(x) else reference(x)


def batch_normalize(x, mean, var, scale, bias, epsilon, reference):
    """BatchNorm's ``(x - mean) * scale / sqrt(var + epsilon) + bias`` by :mod:`.channels` (every operand
    float32), or ``reference(x, mean, var, scale, bias)``."""
    operands = [a for a in (x, mean, var, scale, bias) if a is not None]
    if _enabled(x) and channels.applies(x) and all(a.dtype == jnp.float32 for a in operands):
        return channels.normalize(x, mean, var, scale, bias, epsilon)
    return reference(x, mean, var, scale, bias)
