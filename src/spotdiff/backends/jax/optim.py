"""Optimiser forms Optax has no switch for, written out (used by `spotdiff where` reruns)."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import optax


def adam_eps_hat(learning_rate: float, b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8) -> optax.GradientTransformation:
    """Adam as Keras computes it (epsilon-hat): eps is added to sqrt(v) before the bias correction,
    which goes into the step size: update = -lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps).
    optax.adam adds eps to sqrt(v_hat) instead."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return jnp.zeros([], jnp.int32), zeros, zeros

    def update(grads, state, params=None):
        count, m, v = state
        count = count + 1
        m = jax.tree.map(lambda m, g: m + (g - m) * (1 - b1), m, grads)
        v = jax.tree.map(lambda v, g: v + (g * g - v) * (1 - b2), v, grads)

        def step(m, v):
            t = count.astype(m.dtype)  # the step size in the parameters' own dtype, as Keras does
            alpha = learning_rate * jnp.sqrt(1 - b2**t) / (1 - b1**t)
            return -m * alpha / (jnp.sqrt(v) + eps)

        return jax.tree.map(step, m, v), (count, m, v)

    return optax.GradientTransformation(init, update)


def adam(kwargs: dict, align: dict) -> optax.GradientTransformation:
    """optax.adam(**kwargs), or with align {"adam_eps": "hat"} adam_eps_hat with the same settings
    (eps: the one given, else Optax's own default)."""
    if align.get("adam_eps") != "hat":
        return optax.adam(**kwargs)
    defaults = {k: p.default for k, p in inspect.signature(optax.adam).parameters.items()}
    return adam_eps_hat(kwargs["learning_rate"], kwargs.get("b1", defaults["b1"]),
                        kwargs.get("b2", defaults["b2"]), kwargs.get("eps", defaults["eps"]))
