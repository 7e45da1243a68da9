"""diabetes in TensorFlow: keras.Sequential, MeanSquaredError, keras.optimizers.Adam."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def build_model(data: dict[str, np.ndarray]) -> keras.Model:
    model = keras.Sequential([
        keras.Input((data["w1"].shape[0],)),
        keras.layers.Dense(data["w1"].shape[1], activation="tanh"),
        keras.layers.Dense(data["w2"].shape[1]),
    ])
    model.set_weights([data["w1"], data["b1"], data["w2"], data["b2"]])  # Dense keeps (in, out)
    return model


class Runner:
    whole_loop = False

    def __init__(self, mode, params, data):
        self.params, self.data = params, data
        self.x, self.y = tf.constant(data["x_train"]), tf.constant(data["y_train"])  # (N, 10), (N, 1)
        self.loss_fn = keras.losses.MeanSquaredError()
        self.model = build_model(data)
        self.optimizer = keras.optimizers.Adam(learning_rate=params.lr, epsilon=1e-8)  # torch/optax eps
        self.optimizer.build(self.model.trainable_variables)
        self._start = [v.numpy() for v in self.optimizer.variables]
        self.step = tf.function(self.train_step) if mode == "graph" else self.train_step

    def train_step(self):
        with tf.GradientTape() as tape:
            loss = self.loss_fn(self.y, self.model(self.x, training=True))
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return loss

    def reset(self):
        self.model.set_weights([self.data["w1"], self.data["b1"], self.data["w2"], self.data["b2"]])
        for variable, start in zip(self.optimizer.variables, self._start):
            variable.assign(start)

    def run(self, steps):
        losses = [self.step() for _ in range(steps)]
        return losses if self.params.record_series else []

    def compile(self, steps):
        raise NotImplementedError

    def sync(self, handle):
        pass  # CPU eager ops and tf.function calls return finished tensors here

    def fetch(self, handle):
        return {"loss": tf.stack(handle).numpy()} if handle else {}

    def final_metrics(self):
        train = float(self.loss_fn(self.y, self.model(self.x)))
        test = float(self.loss_fn(self.data["y_test"], self.model(self.data["x_test"])))
        return {"final_loss": train, "test_mse": test}


def build_runner(mode, variant, params, data, threads=1):
    return Runner(mode, params, data)
