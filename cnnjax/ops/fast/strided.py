"""Strided convolution (stride > 1, no dilation, one group) whose input gradient needs no ``lhs_dilation``:
the value is the reference conv's, the derivative with respect to the input one stride-1 conv per phase.

``Y[o] = sum_t F[t] Xpad[S o + t]``. With ``t = S q + r`` (``0 <= r < S``), ``Xpad[S o + t] = X_r[o + q]``
where ``X_r = Xpad[r::S]`` (phase ``r``), so ``Y = sum_r conv_1(X_r, F[r::S])``: ``prod(S)`` stride-1 convs
(fewer when ``S > k``) with ``prod(k)`` taps in all. XLA:CPU differentiates a strided conv with respect to
its input as a convolution of the output gradient with ``S - 1`` zeros inserted between its pixels
(``lhs_dilation``), where ``1 - 1 / prod(S)`` of the products are with zeros; the phases' input gradients are
stride-1 convs of the phase sizes, put back in place by strided pads (the transposes of the phase slices).
The forward pass stays the reference's single conv (faster than the phases' sum), and so does the kernel
gradient: a custom JVP whose input tangent is the phase sum, which is linear, so reverse mode transposes it
and forward mode works as well.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from cnnjax.ops.arithmetic import output_size

#: Fewer input channels than this and XLA:CPU's stride-1 input gradients of the phases are slower than the
#: reference's (an ImageNet stem, 7x7 stride 2 from 3 channels: 36 vs 20 ms fwd+bwd at (8, 112, 112, 3)).
MIN_INPUT_CHANNELS = 8


def applies(x_shape, strides, dilations, groups) -> bool:
    """Dense (one group), undilated, strided along at least one axis, >= ``MIN_INPUT_CHANNELS`` inputs."""
    return (groups == 1 and any(s > 1 for s in strides) and all(d == 1 for d in dilations)
            and x_shape[-1] >= MIN_INPUT_CHANNELS)


def by_phases(x, kernel, strides, pads, stride_1):
    """The conv ``Y[o] = sum_t F[t] Xpad[S o + t]`` (``pads``: zero (lo, hi) pairs) as the sum over phases
    ``r`` of ``stride_1(Xpad[r::S], F[r::S])`` (``stride_1``: an unpadded stride-1 conv)."""
    nd = x.ndim - 2
    window = kernel.shape[:nd]
    x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *[(lo, hi, 0) for lo, hi in pads], (0, 0, 0)))
    out = list(map(output_size, x.shape[1:-1], window, strides))
    terms = []
    for phase in itertools.product(*[range(min(s, k)) for s, k in zip(strides, window)]):
        sub_kernel = kernel[tuple(slice(r, None, s) for r, s in zip(phase, strides))]
        lengths = [n + q - 1 for n, q in zip(out, sub_kernel.shape[:nd])]  # the pixels the phase's taps read
        part = x[(slice(None), *[slice(r, r + s * (m - 1) + 1, s) for r, s, m in zip(phase, strides, lengths)])]
        terms.append(stride_1(part, sub_kernel))
    return functools.reduce(jnp.add, terms)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def strided_conv(x, kernel, strides, pads, reference, stride_1):
    """``reference(x, kernel)`` (the strided conv, ``strides``/``pads`` its arguments); its input tangent
    :func:`by_phases` with ``stride_1`` (an unpadded stride-1 conv)."""
    return reference(x, kernel)


def _strided_conv_jvp(strides, pads, reference, stride_1, primals, tangents):
    """``dY = conv_S(X, dF) + conv_S(dX, F)``, the second term by phases: reverse mode transposes it into
    stride-1 input gradients, one per phase, padded back into place."""
    (x, kernel), (dx, dkernel) = primals, tangents
    y = reference(x, kernel)
    terms = []
    if not isinstance(dkernel, SymbolicZero):
        terms.append(reference(x, dkernel))
    if not isinstance(dx, SymbolicZero):
        terms.append(by_phases(dx, kernel, strides, pads, stride_1))
    return y, functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)


strided_conv.defjvp(_strided_conv_jvp, symbolic_zeros=True)
