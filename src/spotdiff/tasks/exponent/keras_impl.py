"""Exponent fit in Keras 3, on the backend the mode names (KERAS_BACKEND, set before import).

The math is `keras.ops`, phi a `keras.Variable`, the optimizer `keras.optimizers`; the gradient
comes from the backend's own autodiff, as Keras' guides write a custom training loop (Keras has no
backend-neutral autodiff). `-jit` modes compile the step the way Keras' trainer does for
`jit_compile=True`: `jax.jit`, `tf.function(jit_compile=True)`, `torch.compile`. Without it the
trainer runs JAX op by op (no jit at all), TensorFlow as a tf.function graph without XLA, and
PyTorch eagerly; so do these modes.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from spotdiff.backends.keras import env
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.exponent.spec import ExponentParams

BACKEND = keras.backend.backend()


def loss_fn(phi: Any, x: Any, y: Any) -> Any:
    return ops.mean(ops.square(ops.power(x, phi) - y))  # x, y: (N,) -> scalar


def make_optimizer(phi: keras.Variable, params: ExponentParams, lr: float) -> keras.optimizers.Optimizer:
    # phi: unused, a Keras optimizer meets its variables in build() (torch.optim binds them here)
    # Keras' argument names are TensorFlow's (its optimizers are Keras'): momentum / beta_1, beta_2 /
    # rho / epsilon; with hparams=native, unset ones are Keras' defaults
    kwargs = native_kwargs("tensorflow", params.optimizer, params.optimizer_hparams())
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, **kwargs)
    if params.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr, **kwargs)
    return keras.optimizers.RMSprop(learning_rate=lr, **kwargs)


def value_and_grad(phi: Any, x: Any, y: Any) -> tuple[Any, Any]:
    """(loss, d loss / d phi) through the backend's autodiff; `phi` a keras.Variable (a JAX array
    on JAX, whose steps are stateless)."""
    if BACKEND == "jax":
        import jax

        return jax.value_and_grad(loss_fn)(phi, x, y)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(phi, x, y)
        return loss, tape.gradient(loss, phi.value)

    loss = loss_fn(phi.value, x, y)
    loss.backward()  # as Keras' PyTorch guide: backward, then read .grad
    grad, phi.value.grad = phi.value.grad, None
    return loss.detach(), grad


def jit_compile(step, jit: bool):
    """The step as Keras' trainer runs it with jit_compile=`jit` on this backend."""
    if BACKEND == "jax":
        import jax

        return jax.jit(step) if jit else step  # off: no jit, every op dispatched on its own
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(step, jit_compile=jit)  # off: a graph without XLA
    import torch

    return torch.compile(step) if jit else step  # off: eager


class ExponentRunner:
    """The six Keras modes (see spotdiff.measure.StepRunner): `<backend>` and `<backend>-jit`."""

    whole_loop = False

    def __init__(self, mode: str, variant: str, params: ExponentParams, data: dict[str, np.ndarray]):
        self.params = params
        self.jit = mode.endswith("-jit")
        self.x = ops.convert_to_tensor(data["x"], "float32")  # (N,)
        self.y = ops.convert_to_tensor(data["y"], "float32")  # (N,)
        self.phi = keras.Variable(params.init_phi, dtype="float32", name="phi")  # () trainable
        self.lr = params.learning_rate(variant)
        self.optimizer = make_optimizer(self.phi, params, self.lr) if variant == "optimizer" else None
        if self.optimizer:
            self.optimizer.build([self.phi])
            # Keras keeps the iteration count and learning rate among its variables: reset to these.
            self._optimizer_start = [ops.convert_to_numpy(v) for v in self.optimizer.variables]
        step = self._stateless_step if BACKEND == "jax" else self._step
        self.train_step = jit_compile(step, self.jit)
        self.reset()

    def _step(self) -> tuple[Any, Any]:
        """TensorFlow and PyTorch: variables updated in place."""
        loss, grad = value_and_grad(self.phi, self.x, self.y)
        if self.optimizer is None:
            self.phi.assign_sub(self.lr * grad)  # the hand-written update of the post
        else:
            self.optimizer.apply([grad], [self.phi])
        return loss, ops.copy(ops.stop_gradient(self.phi.value))  # phi after the update, ()

    def _stateless_step(self, state: tuple[Any, list], x: Any, y: Any):
        """JAX: (phi, optimizer variables) in and out, as Keras' JAX guide writes it."""
        phi, optimizer_variables = state
        loss, grad = value_and_grad(phi, x, y)
        if self.optimizer is None:
            phi = phi - self.lr * grad  # the hand-written update of the post
        else:
            (phi,), optimizer_variables = self.optimizer.stateless_apply(optimizer_variables, [grad], [phi])
        return (phi, optimizer_variables), (loss, phi)

    def reset(self) -> None:
        self.phi.assign(self.params.init_phi)
        if self.optimizer:
            for variable, start in zip(self.optimizer.variables, self._optimizer_start):
                variable.assign(start)
        if BACKEND == "jax":
            variables = [v.value for v in self.optimizer.variables] if self.optimizer else []
            self.state = (self.phi.value, variables)

    def compile(self, steps: int) -> None:
        raise NotImplementedError("Keras modes run step by step")

    def run(self, steps: int) -> Any:
        records = []
        for _ in range(steps):
            if BACKEND == "jax":
                self.state, out = self.train_step(self.state, self.x, self.y)
            else:
                out = self.train_step()
            if self.params.record_series:
                records.append(out)  # (loss, phi) stay on the device until fetched
        return (self.state if BACKEND == "jax" else None, records)

    def sync(self, handle: Any) -> None:
        env.sync(handle[0] if BACKEND == "jax" else None)

    def fetch(self, handle: Any) -> dict[str, np.ndarray]:
        _, records = handle
        if not records:
            return {}
        losses, phis = ops.stack([r[0] for r in records]), ops.stack([r[1] for r in records])
        return {"loss": ops.convert_to_numpy(losses), "phi": ops.convert_to_numpy(phis)}

    def current_phi(self) -> Any:
        return self.state[0] if BACKEND == "jax" else self.phi.value

    def final_metrics(self) -> dict[str, float]:
        phi = self.current_phi()
        loss = loss_fn(phi, self.x, self.y)
        return {"final_phi": float(ops.convert_to_numpy(phi)),
                "final_loss": float(ops.convert_to_numpy(loss))}


def build_runner(mode: str, variant: str, params: ExponentParams, data: dict[str, np.ndarray],
                 threads: int = 1):
    return ExponentRunner(mode, variant, params, data)


def write_tensorboard(runner: ExponentRunner, board: Any, series: dict[str, list[float]]) -> None:
    """After timing: phi and its gradient every K steps (the backend's autodiff), the learning rate."""

    def gradient_at(phis: np.ndarray) -> np.ndarray:
        grads = []
        for value in phis:
            phi = keras.Variable(float(value), dtype="float32")
            _, grad = value_and_grad(phi.value if BACKEND == "jax" else phi, runner.x, runner.y)
            grads.append(ops.convert_to_numpy(grad))
        return np.asarray(grads)

    board.trajectory_histograms("phi", runner.params.init_phi, series.get("phi", []), gradient_at)
    board.step_scalars({"train/learning_rate": [runner.lr] * runner.params.steps})


def _power_loss_grad(phi: Any, x: Any, y: Any) -> tuple[Any, Any, Any]:
    """x**phi (N,), the loss and d loss / d phi through the backend's autodiff (as value_and_grad,
    with the forward output kept); `phi` a keras.Variable, a JAX array on JAX."""
    if BACKEND == "jax":
        import jax

        def forward(phi: Any) -> tuple[Any, Any]:
            power = ops.power(x, phi)  # (N,): the one "layer"
            return ops.mean(ops.square(power - y)), power

        (loss, power), grad = jax.value_and_grad(forward, has_aux=True)(phi)
        return power, loss, grad
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            power = ops.power(x, phi)
            loss = ops.mean(ops.square(power - y))
        return power, loss, tape.gradient(loss, phi.value)
    power = ops.power(x, phi.value)
    loss = ops.mean(ops.square(power - y))
    loss.backward()
    grad, phi.value.grad = phi.value.grad, None
    return power.detach(), loss.detach(), grad


def _recorded(params: ExponentParams, data: dict[str, np.ndarray], steps: int, dtype: str,
            align: dict[str, Any], mode: str, variant: str) -> dict[str, Any]:
    """record_steps inside env.computing_in(dtype)."""
    x, y = ops.convert_to_tensor(data["x"], dtype), ops.convert_to_tensor(data["y"], dtype)  # (N,)
    lr = params.learning_rate(variant)
    phi = keras.Variable(params.init_phi, dtype=dtype, name="phi")  # ()
    optimizer = make_optimizer(phi, params, lr) if variant == "optimizer" else None
    if optimizer:
        optimizer.build([phi])

    def step() -> tuple[Any, Any, Any, Any]:
        """TensorFlow and PyTorch: phi updated in place."""
        power, loss, grad = _power_loss_grad(phi, x, y)
        if optimizer is None:
            phi.assign_sub(lr * grad)
        else:
            optimizer.apply([grad], [phi])
        return power, loss, grad, ops.copy(ops.stop_gradient(phi.value))  # phi after the update

    def stateless_step(state: tuple[Any, list]) -> tuple[tuple[Any, list], tuple[Any, Any, Any, Any]]:
        """JAX: (phi, optimizer variables) in and out."""
        phi_now, optimizer_variables = state
        power, loss, grad = _power_loss_grad(phi_now, x, y)
        if optimizer is None:
            phi_now = phi_now - lr * grad
        else:
            (phi_now,), optimizer_variables = optimizer.stateless_apply(
                optimizer_variables, [grad], [phi_now])
        return (phi_now, optimizer_variables), (power, loss, grad, phi_now)

    jit = mode.endswith("-jit")
    run_step = jit_compile(stateless_step if BACKEND == "jax" else step, jit)
    state = (phi.value, [v.value for v in optimizer.variables] if optimizer else [])
    tensors: dict[str, np.ndarray] = {}
    for index in range(steps):
        if BACKEND == "jax":
            state, out = run_step(state)
        else:
            out = run_step()
        for key, value in zip(("forward/power", "loss", "grad/phi", "param/phi"), out):
            tensors[f"{index}/{key}"] = np.array(ops.convert_to_numpy(value))
    keras_form = {"rmsprop": ("rmsprop_eps", "inside"), "adam": ("adam_eps", "hat")}.get(params.optimizer)
    honoured = optimizer is not None and keras_form is not None and align.get(keras_form[0]) == keras_form[1]
    return {
        "tensors": tensors,
        "layers": [("power", "power")],
        "params": ["phi"],
        "optimizer": params.optimizer if optimizer is not None else None,
        "aligned": [keras_form[0]] if honoured else [],
    }


def record_steps(
    params: ExponentParams,
    data: dict[str, np.ndarray],
    steps: int,
    dtype: str,
    align: dict[str, Any],
    mode: str,
    variant: str,
) -> dict[str, Any]:
    """`spotdiff where`: `steps` steps from init_phi in `dtype` on the mode's backend, every tensor
    as numpy; a `-jit` mode compiles the step as the runner does (jax.jit, XLA, torch.compile).

    align {"rmsprop_eps": "inside"}, {"adam_eps": "hat"}: Keras' RMSprop and Adam already compute
    g / sqrt(v + eps), and m / (sqrt(v) + eps) with eps added before the bias correction.
    """
    with env.computing_in(dtype):  # float64: JAX's x64 on, Keras' promotion keeps float64
        return _recorded(params, data, steps, dtype, align, mode, variant)
