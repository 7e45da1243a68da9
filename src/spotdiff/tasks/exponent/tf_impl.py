"""Exponent fit in TensorFlow: GradientTape eager, tf.function, XLA, or a tf.compat.v1 Session."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from spotdiff.backends.tensorflow import env
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.exponent.spec import ExponentParams


def loss_fn(phi: tf.Variable, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean((x**phi - y) ** 2)  # x, y: (N,) -> scalar


def debug_graph(params: ExponentParams, data: dict[str, np.ndarray]) -> tuple[Any, tuple]:
    """What `spotdiff debug`'s graph probe traces: loss_fn(phi, x, y) at the initial phi."""
    phi = tf.constant(params.init_phi, dtype=tf.float32)
    return loss_fn, (phi, tf.constant(data["x"]), tf.constant(data["y"]))


def make_optimizer(phi: tf.Variable, params: ExponentParams, lr: float) -> keras.optimizers.Optimizer:
    # phi: unused, a Keras optimizer meets its variables in build() (torch.optim binds them here)
    # momentum / beta_1, beta_2 / rho / epsilon; with hparams=native, unset ones are Keras' defaults
    kwargs = native_kwargs("tensorflow", params.optimizer, params.optimizer_hparams())
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, **kwargs)
    if params.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr, **kwargs)
    return keras.optimizers.RMSprop(learning_rate=lr, **kwargs)


class ExponentRunner:
    """Eager, tf.function and XLA modes (see spotdiff.measure.StepRunner)."""

    whole_loop = False

    def __init__(self, mode: str, variant: str, params: ExponentParams, data: dict[str, np.ndarray]):
        self.params = params
        self.x = tf.constant(data["x"])  # (N,)
        self.y = tf.constant(data["y"])  # (N,)
        self.phi = tf.Variable(params.init_phi, dtype=tf.float32, name="phi")
        self.lr = params.learning_rate(variant)
        self.optimizer = make_optimizer(self.phi, params, self.lr) if variant == "optimizer" else None
        if self.optimizer:
            self.optimizer.build([self.phi])
            # Keras keeps the learning rate among its variables: reset to these, not to zeros.
            self._optimizer_start = [v.numpy() for v in self.optimizer.variables]
        step = self._optimizer_step if self.optimizer else self._manual_step
        self.python_step = step  # before tf.function: TensorBoard traces it for eager mode's graph
        if mode == "graph":
            step = tf.function(step)
        elif mode == "xla":
            step = tf.function(step, jit_compile=True)
        self.train_step = step

    def _manual_step(self) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = loss_fn(self.phi, self.x, self.y)
        grad = tape.gradient(loss, self.phi)
        self.phi.assign_sub(self.lr * grad)  # the hand-written update of the post
        return loss, self.phi.read_value()

    def _optimizer_step(self) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = loss_fn(self.phi, self.x, self.y)
        grad = tape.gradient(loss, self.phi)
        self.optimizer.apply_gradients([(grad, self.phi)])
        return loss, self.phi.read_value()

    def reset(self) -> None:
        self.phi.assign(self.params.init_phi)
        if self.optimizer:
            for variable, start in zip(self.optimizer.variables, self._optimizer_start):
                variable.assign(start)

    def compile(self, steps: int) -> None:
        raise NotImplementedError("TensorFlow modes run step by step")

    def run(self, steps: int) -> Any:
        losses, phis = [], []
        for _ in range(steps):
            loss, phi = self.train_step()  # phi after the update
            if self.params.record_series:
                losses.append(loss)
                phis.append(phi)
        return (losses, phis)

    def sync(self, handle: Any) -> None:
        env.sync()

    def fetch(self, handle: Any) -> dict[str, np.ndarray]:
        losses, phis = handle
        if not losses:
            return {}
        return {"loss": tf.stack(losses).numpy(), "phi": tf.stack(phis).numpy()}

    def final_metrics(self) -> dict[str, float]:
        loss = loss_fn(self.phi, self.x, self.y)
        return {"final_phi": float(self.phi.numpy()), "final_loss": float(loss.numpy())}


class SessionRunner:
    """The static-graph style of the post: placeholders, a v1 optimizer and Session.run."""

    whole_loop = False

    def __init__(self, variant: str, params: ExponentParams, data: dict[str, np.ndarray], threads: int):
        v1 = tf.compat.v1
        self.params = params
        self.feed_values = (data["x"], data["y"])
        self.lr = lr = params.learning_rate(variant)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.x = v1.placeholder(tf.float32, shape=[None], name="x")  # (N,)
            self.y = v1.placeholder(tf.float32, shape=[None], name="y")  # (N,)
            self.phi = v1.get_variable("phi", initializer=tf.constant(params.init_phi, tf.float32))
            self.loss = loss_fn(self.phi, self.x, self.y)
            if variant == "manual":
                (grad,) = tf.gradients(self.loss, [self.phi])
                self.train_op = self.phi.assign_sub(lr * grad)
            else:
                self.train_op = _v1_optimizer(params, lr).minimize(self.loss)
            with tf.control_dependencies([self.train_op]):
                self.phi_after = tf.identity(self.phi)
            self.init_op = v1.global_variables_initializer()
        config = v1.ConfigProto(
            intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads
        )
        self.session = v1.Session(graph=self.graph, config=config)

    def _feed(self) -> dict:
        return {self.x: self.feed_values[0], self.y: self.feed_values[1]}

    def reset(self) -> None:
        self.session.run(self.init_op)

    def compile(self, steps: int) -> None:
        raise NotImplementedError("session mode runs step by step")

    def run(self, steps: int) -> Any:
        feed = self._feed()
        if not self.params.record_series:
            for _ in range(steps):
                self.session.run(self.train_op, feed_dict=feed)
            return ([], [])
        losses, phis = [], []
        for _ in range(steps):
            loss, phi = self.session.run([self.loss, self.phi_after], feed_dict=feed)
            losses.append(loss)
            phis.append(phi)
        return (losses, phis)

    def sync(self, handle: Any) -> None:
        pass  # Session.run returns host values: it has already waited

    def fetch(self, handle: Any) -> dict[str, np.ndarray]:
        losses, phis = handle
        return {"loss": np.asarray(losses), "phi": np.asarray(phis)} if losses else {}

    def final_metrics(self) -> dict[str, float]:
        loss, phi = self.session.run([self.loss, self.phi], feed_dict=self._feed())
        return {"final_phi": float(phi), "final_loss": float(loss)}


def _v1_optimizer(params: ExponentParams, lr: float):
    train = tf.compat.v1.train
    hp = params.optimizer_hparams()  # hparams=native: unset ones are the v1 defaults (RMSProp eps 1e-10)
    if params.optimizer == "sgd":
        return train.MomentumOptimizer(lr, momentum=hp["momentum"])
    v1_names = {"beta1": "beta1", "beta2": "beta2", "rho": "decay", "eps": "epsilon"}
    kwargs = {v1_names[key]: value for key, value in hp.items()}
    if params.optimizer == "adam":
        return train.AdamOptimizer(lr, **kwargs)
    return train.RMSPropOptimizer(lr, **kwargs)


def build_runner(
    mode: str, variant: str, params: ExponentParams, data: dict[str, np.ndarray], threads: int = 1
):
    if mode == "session":
        return SessionRunner(variant, params, data, threads)
    return ExponentRunner(mode, variant, params, data)


def write_tensorboard(
    runner: ExponentRunner | SessionRunner, board: Any, series: dict[str, list[float]]
) -> None:
    """After timing: phi and its gradient every K steps, the learning rate, the traced graph."""
    from spotdiff.backends.tensorflow.tensorboard import write_graph

    session = isinstance(runner, SessionRunner)
    x, y = (tf.constant(v) for v in runner.feed_values) if session else (runner.x, runner.y)

    def gradient_at(phis: np.ndarray) -> np.ndarray:  # GradientTape at each recorded phi
        grads = []
        for value in phis:
            phi = tf.constant(value)
            with tf.GradientTape() as tape:
                tape.watch(phi)
                loss = loss_fn(phi, x, y)
            grads.append(tape.gradient(loss, phi).numpy())
        return np.asarray(grads)

    board.trajectory_histograms("phi", runner.params.init_phi, series.get("phi", []), gradient_at)
    board.step_scalars({"train/learning_rate": [runner.lr] * runner.params.steps})
    if session:
        write_graph(board, runner.graph)  # the v1 graph Session.run executed
    elif isinstance(runner.train_step, tf.types.experimental.PolymorphicFunction):
        write_graph(board, runner.train_step)  # the trace graph/xla mode ran
    else:
        write_graph(board, tf.function(runner.python_step))  # eager runs no graph: its trace, for reference


def record_steps(
    params: ExponentParams,
    data: dict[str, np.ndarray],
    steps: int,
    dtype: str,
    align: dict[str, Any],
    mode: str,
    variant: str,
) -> dict[str, Any]:
    """`spotdiff where`: `steps` steps from init_phi in `dtype`, every tensor as numpy.

    align {"rmsprop_eps": "inside"}, {"adam_eps": "hat"}: Keras' RMSprop already puts eps inside
    the square root, and its Adam adds eps to sqrt(v) before the bias correction.
    """
    if mode == "session":
        raise ValueError("where records tensorflow in eager, graph or xla mode, not session")
    x, y = tf.constant(data["x"], dtype=dtype), tf.constant(data["y"], dtype=dtype)  # (N,)
    phi = tf.Variable(params.init_phi, dtype=dtype, name="phi")
    lr = params.learning_rate(variant)
    optimizer = make_optimizer(phi, params, lr) if variant == "optimizer" else None

    def step() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            power = x**phi  # (N,): the one "layer"
            loss = tf.reduce_mean((power - y) ** 2)
        grad = tape.gradient(loss, phi)
        if optimizer is None:
            phi.assign_sub(lr * grad)
        else:
            optimizer.apply_gradients([(grad, phi)])
        return power, loss, grad

    run_step = tf.function(step, jit_compile=mode == "xla") if mode in ("graph", "xla") else step
    tensors: dict[str, np.ndarray] = {}
    for index in range(steps):
        power, loss, grad = run_step()
        tensors[f"{index}/forward/power"] = power.numpy()
        tensors[f"{index}/loss"] = loss.numpy()
        tensors[f"{index}/grad/phi"] = grad.numpy()
        tensors[f"{index}/param/phi"] = phi.numpy()
    keras_form = {"rmsprop": ("rmsprop_eps", "inside"), "adam": ("adam_eps", "hat")}.get(params.optimizer)
    honoured = optimizer is not None and keras_form is not None and align.get(keras_form[0]) == keras_form[1]
    return {
        "tensors": tensors,
        "layers": [("power", "power")],
        "params": ["phi"],
        "optimizer": params.optimizer if optimizer is not None else None,
        "aligned": [keras_form[0]] if honoured else [],
    }
