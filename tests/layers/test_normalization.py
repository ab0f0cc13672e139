"""``cnnjax.layers.BatchNorm`` against flax's ``nn.BatchNorm`` (the oracle it replaces in the model zoo): the
same variables, and with the reference formulation (``fast.reference_only``) the same bits in values, running
statistics and gradients; with the CPU fast path (the per-channel sums in C++) equal within float32 rounding.
Its second derivatives and ``vmap`` equal the reference's."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.layers import BatchNorm
from cnnjax.ops import fast


def _x(shape=(6, 5, 4, 16), seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 3 + 1)


def _train_step(module, variables, x, reference: bool):
    """Output, updated batch_stats, and the gradients of a loss with respect to params and input."""
    def loss(params, x):
        y, updates = module.apply({**variables, "params": params}, x, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(y.astype(jnp.float32))), (y, updates)

    fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    if reference:
        with fast.reference_only():
            return fn(variables["params"], x)
    return fn(variables["params"], x)


@pytest.mark.parametrize("kwargs", [dict(), dict(dtype=jnp.bfloat16), dict(use_bias=False),
                                    dict(scale_init=nn.initializers.zeros)],
                         ids=["defaults", "bfloat16", "no-bias", "zero-scale"])
def test_train_mode_equals_flax(kwargs):
    x = _x()
    theirs, ours = (cls(use_running_average=False, momentum=0.9, **kwargs) for cls in (nn.BatchNorm, BatchNorm))
    variables = theirs.init(jax.random.key(0), x)
    ours_variables = ours.init(jax.random.key(0), x)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), variables) == jax.tree.map(lambda a: (a.shape, a.dtype),
                                                                                 ours_variables)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(ours_variables)))
    variables = jax.tree.map(lambda a: a + 0.1, variables)  # running averages and params away from their init
    want = _train_step(theirs, variables, x, reference=False)
    assert "channel_sum" in str(jax.make_jaxpr(lambda v, x: ours.apply(v, x, mutable=["batch_stats"]))(variables, x))
    got_reference = _train_step(ours, variables, x, reference=True)
    for g, w in zip(jax.tree.leaves(got_reference), jax.tree.leaves(want)):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(w, np.float32))
    got = _train_step(ours, variables, x, reference=False)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.dtype == w.dtype
        tol = 1e-2 if w.dtype == jnp.bfloat16 else 1e-4
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32), rtol=tol, atol=tol)


def test_eval_mode_uses_the_running_averages_as_flax():
    x = _x()
    theirs, ours = (cls(use_running_average=True, momentum=0.9) for cls in (nn.BatchNorm, BatchNorm))
    variables = jax.tree.map(lambda a: a * 0.5 + 0.2, theirs.init(jax.random.key(0), x))
    np.testing.assert_array_equal(ours.apply(variables, x), theirs.apply(variables, x))


def test_second_derivatives_and_vmap_equal_the_reference():
    x = _x((3, 4, 3, 16), seed=1)
    module = BatchNorm(use_running_average=False)
    variables = module.init(jax.random.key(0), x[0])

    def loss(x, params):
        y, _ = module.apply({**variables, "params": params}, x, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(y) ** 2)

    def gradient_norm(x, params):  # differentiated in reverse mode again: the backward pass's transposes
        return sum(jnp.sum(g ** 2) for g in jax.tree.leaves(jax.grad(loss, argnums=(0, 1))(x, params)))

    def both():  # jitted afresh: a jitted function keeps the formulation of its first trace
        hessian = jax.jit(jax.hessian(loss, argnums=(0, 1)))
        reverse_over_reverse = jax.jit(jax.grad(gradient_norm, argnums=(0, 1)))
        per_element = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(0, None)))
        return (hessian(x[0], variables["params"]), reverse_over_reverse(x[0], variables["params"]),
                per_element(x, variables["params"]))

    assert "channel_dot" in str(jax.make_jaxpr(jax.hessian(loss, argnums=(0, 1)))(x[0], variables["params"]))
    got = both()
    with fast.reference_only():
        want = both()
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-3, atol=1e-3)
