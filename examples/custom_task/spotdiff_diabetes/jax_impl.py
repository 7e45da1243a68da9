"""diabetes in JAX: a pure MLP function, optax.adam, a jitted step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def build_model(data: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    return {k: jnp.asarray(data[k]) for k in ("w1", "b1", "w2", "b2")}  # (in, out) like the spec


def predict(params, x):
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]  # (N, 1)


def mse(params, x, y):
    return jnp.mean((predict(params, x) - y) ** 2)


class Runner:
    whole_loop = False

    def __init__(self, params, data):
        self.params, self.data = params, data
        self.x, self.y = jnp.asarray(data["x_train"]), jnp.asarray(data["y_train"])
        self.optimizer = optax.adam(params.lr)

        @jax.jit
        def train_step(weights, opt_state, x, y):
            loss, grads = jax.value_and_grad(mse)(weights, x, y)
            updates, opt_state = self.optimizer.update(grads, opt_state, weights)
            return optax.apply_updates(weights, updates), opt_state, loss

        self.train_step = train_step
        self.reset()

    def reset(self):
        self.weights = build_model(self.data)
        self.opt_state = self.optimizer.init(self.weights)

    def run(self, steps):
        losses = []
        for _ in range(steps):
            self.weights, self.opt_state, loss = self.train_step(self.weights, self.opt_state, self.x, self.y)
            losses.append(loss)
        return (self.weights, losses if self.params.record_series else [])

    def compile(self, steps):
        raise NotImplementedError

    def sync(self, handle):
        jax.block_until_ready(handle)

    def fetch(self, handle):
        return {"loss": np.asarray(jnp.stack(handle[1]))} if handle[1] else {}

    def final_metrics(self):
        test = mse(self.weights, jnp.asarray(self.data["x_test"]), jnp.asarray(self.data["y_test"]))
        return {"final_loss": float(mse(self.weights, self.x, self.y)), "test_mse": float(test)}


def build_runner(mode, variant, params, data, threads=1):
    return Runner(params, data)
