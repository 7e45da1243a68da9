"""Exponent fit in JAX: jax.grad + a hand-written update, or Optax; op by op, jitted, or fused."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from spotdiff.backends.jax import env
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.exponent.spec import ExponentParams


def loss_fn(phi: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((x**phi - y) ** 2)  # x, y: (N,) -> scalar


def debug_graph(params: ExponentParams, data: dict[str, np.ndarray]) -> tuple[Any, tuple]:
    """What `spotdiff debug`'s graph probe traces: loss_fn(phi, x, y) at the initial phi."""
    phi = jnp.asarray(params.init_phi, dtype=jnp.float32)
    return loss_fn, (phi, jnp.asarray(data["x"]), jnp.asarray(data["y"]))


def make_optimizer(phi: jax.Array | float, params: ExponentParams, lr: float) -> optax.GradientTransformation:
    # phi: unused, an Optax transformation is pure (torch.optim binds the tensor it updates)
    # momentum / b1, b2 / decay / eps; with hparams=native, unset ones are Optax's defaults
    kwargs = native_kwargs("jax", params.optimizer, params.optimizer_hparams())
    if params.optimizer == "sgd":
        return optax.sgd(lr, **kwargs)
    if params.optimizer == "adam":
        return optax.adam(lr, **kwargs)
    return optax.rmsprop(lr, **kwargs)


class TrainState(NamedTuple):
    phi: jax.Array
    opt_state: Any


def make_train_step(variant: str, lr: float, optimizer: optax.GradientTransformation | None):
    """A pure step: (state, x, y) -> (state, (loss, phi after the update))."""

    def train_step(state: TrainState, x: jax.Array, y: jax.Array):
        loss, grad = jax.value_and_grad(loss_fn)(state.phi, x, y)
        if optimizer is None:
            phi = state.phi - lr * grad  # the hand-written update of the post
            opt_state = state.opt_state
        else:
            updates, opt_state = optimizer.update(grad, state.opt_state, state.phi)
            phi = optax.apply_updates(state.phi, updates)
        return TrainState(phi, opt_state), (loss, phi)

    return train_step


class ExponentRunner:
    """eager, jit and fused modes (see spotdiff.measure.StepRunner)."""

    def __init__(self, mode: str, variant: str, params: ExponentParams, data: dict[str, np.ndarray]):
        self.mode, self.params = mode, params
        self.whole_loop = mode == "fused"
        self.x = jnp.asarray(data["x"])  # (N,)
        self.y = jnp.asarray(data["y"])  # (N,)
        self.lr = params.learning_rate(variant)
        self.optimizer = make_optimizer(params.init_phi, params, self.lr) if variant == "optimizer" else None
        step = make_train_step(variant, self.lr, self.optimizer)
        self.step = jax.jit(step) if mode == "jit" else step
        self.fused_loop = None
        self.state = self._initial_state()

    def _initial_state(self) -> TrainState:
        phi = jnp.asarray(self.params.init_phi, dtype=jnp.float32)
        opt_state = self.optimizer.init(phi) if self.optimizer else ()
        return TrainState(phi, opt_state)

    def reset(self) -> None:
        self.state = self._initial_state()

    def compile(self, steps: int) -> None:
        step, record = self.step, self.params.record_series

        @jax.jit
        def train_loop(state: TrainState, x: jax.Array, y: jax.Array):
            def body(carry, _):
                carry, out = step(carry, x, y)
                return carry, (out if record else None)

            return jax.lax.scan(body, state, None, length=steps)  # records: ((steps,), (steps,))

        self.train_loop = train_loop  # kept for TensorBoard's jaxpr of the whole loop
        self.fused_loop = train_loop.lower(self.state, self.x, self.y).compile()

    def run(self, steps: int) -> Any:
        if self.whole_loop:
            self.state, records = self.fused_loop(self.state, self.x, self.y)
            return (self.state, [records] if records is not None else [])
        records = self._steps(steps)  # eager: no jax.jit, every primitive dispatched on its own
        return (self.state, records)

    def _steps(self, steps: int) -> list:
        records = []
        for _ in range(steps):
            self.state, out = self.step(self.state, self.x, self.y)
            if self.params.record_series:
                records.append(out)
        return records

    def sync(self, handle: Any) -> None:
        env.sync(handle)

    def fetch(self, handle: Any) -> dict[str, np.ndarray]:
        _, records = handle
        if not records:
            return {}
        if self.whole_loop:
            losses, phis = records[0]
        else:
            losses, phis = jnp.stack([r[0] for r in records]), jnp.stack([r[1] for r in records])
        return {"loss": np.asarray(losses), "phi": np.asarray(phis)}

    def final_metrics(self) -> dict[str, float]:
        loss = loss_fn(self.state.phi, self.x, self.y)
        return {"final_phi": float(self.state.phi), "final_loss": float(loss)}


def build_runner(
    mode: str, variant: str, params: ExponentParams, data: dict[str, np.ndarray], threads: int = 1
):
    return ExponentRunner(mode, variant, params, data)


def write_tensorboard(runner: ExponentRunner, board: Any, series: dict[str, list[float]]) -> None:
    """After timing: phi and its gradient every K steps, the learning rate, the jaxpr as a graph."""
    from spotdiff.backends.jax.tensorboard import write_graph
    from spotdiff.record.tensorboard import code_block

    def gradient_at(phis: np.ndarray) -> np.ndarray:  # jax.grad at each recorded phi, batched
        grad = jax.jit(jax.vmap(jax.grad(loss_fn), in_axes=(0, None, None)))
        return np.asarray(grad(jnp.asarray(phis), runner.x, runner.y))

    board.trajectory_histograms("phi", runner.params.init_phi, series.get("phi", []), gradient_at)
    board.step_scalars({"train/learning_rate": [runner.lr] * runner.params.steps})
    if runner.whole_loop:  # the whole scan loop, and the optimised HLO of the program that ran
        write_graph(board, runner.train_loop, (runner.state, runner.x, runner.y), ("state", "x", "y"))
        board.text("graph/hlo", code_block(runner.fused_loop.as_text()))
    else:
        write_graph(board, runner.step, (runner.state, runner.x, runner.y), ("state", "x", "y"))


def _adam_eps_hat(learning_rate: float, b1: float = 0.9, b2: float = 0.999,
                  eps: float = 1e-8) -> optax.GradientTransformation:
    """Adam as Keras computes it (epsilon-hat): eps added to sqrt(v) before the bias correction,
    which goes into the step size; optax.adam adds it to sqrt(v_hat)."""

    def init(phi: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        return jnp.zeros_like(phi), jnp.zeros_like(phi), jnp.zeros_like(phi)  # m, v, step count

    def update(grad: jax.Array, state: tuple, phi: jax.Array | None = None):
        m, v, t = state
        t = t + 1  # in phi's dtype: a float32 run stays float32 under x64
        m, v = b1 * m + (1 - b1) * grad, b2 * v + (1 - b2) * grad * grad
        alpha = learning_rate * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        return -alpha * m / (jnp.sqrt(v) + eps), (m, v, t)

    return optax.GradientTransformation(init, update)


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

    align {"rmsprop_eps": "inside"}: Optax `eps_in_sqrt=True`, said explicitly.
    align {"adam_eps": "hat"}: Adam as Keras computes it (written out: Optax has no such option).
    """
    jax.config.update("jax_enable_x64", True)  # float64 exists only with x64; float32 stays explicit
    x, y = jnp.asarray(data["x"], dtype=dtype), jnp.asarray(data["y"], dtype=dtype)  # (N,)
    lr = params.learning_rate(variant)
    eps_inside = (
        variant == "optimizer" and params.optimizer == "rmsprop" and align.get("rmsprop_eps") == "inside"
    )
    eps_hat = variant == "optimizer" and params.optimizer == "adam" and align.get("adam_eps") == "hat"
    optimizer = None
    if variant == "optimizer":
        kwargs = native_kwargs("jax", params.optimizer, params.optimizer_hparams())
        if eps_inside:
            optimizer = optax.rmsprop(lr, eps_in_sqrt=True, **kwargs)
        elif eps_hat:
            optimizer = _adam_eps_hat(lr, **kwargs)
        else:
            optimizer = make_optimizer(params.init_phi, params, lr)

    def step(phi: jax.Array, opt_state: Any):
        def forward(phi: jax.Array):
            power = x**phi  # (N,): the one "layer"
            return jnp.mean((power - y) ** 2), power

        (loss, power), grad = jax.value_and_grad(forward, has_aux=True)(phi)
        if optimizer is None:
            return phi - lr * grad, opt_state, (power, loss, grad)
        updates, opt_state = optimizer.update(grad, opt_state, phi)
        return optax.apply_updates(phi, updates), opt_state, (power, loss, grad)

    run_step = jax.jit(step) if mode in ("jit", "fused") else step
    phi = jnp.asarray(params.init_phi, dtype=dtype)
    opt_state = optimizer.init(phi) if optimizer is not None else ()
    tensors: dict[str, np.ndarray] = {}
    for index in range(steps):
        phi, opt_state, (power, loss, grad) = run_step(phi, opt_state)
        tensors[f"{index}/forward/power"] = np.asarray(power)
        tensors[f"{index}/loss"] = np.asarray(loss)
        tensors[f"{index}/grad/phi"] = np.asarray(grad)
        tensors[f"{index}/param/phi"] = np.asarray(phi)
    return {
        "tensors": tensors,
        "layers": [("power", "power")],
        "params": ["phi"],
        "optimizer": params.optimizer if optimizer is not None else None,
        "aligned": ["rmsprop_eps"] if eps_inside else ["adam_eps"] if eps_hat else [],
    }
