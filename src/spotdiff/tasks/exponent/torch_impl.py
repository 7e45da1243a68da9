"""Exponent fit in PyTorch: autograd + a hand-written update, or torch.optim; eager or torch.compile."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from spotdiff.backends.torch import env
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.exponent.spec import ExponentParams


def loss_fn(phi: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.mean((x**phi - y) ** 2)  # x, y: (N,) -> scalar


def debug_graph(params: ExponentParams, data: dict[str, np.ndarray]) -> tuple[Any, tuple]:
    """What `spotdiff debug`'s graph probe traces: loss_fn(phi, x, y) at the initial phi."""
    phi = torch.tensor(params.init_phi, dtype=torch.float32)
    return loss_fn, (phi, torch.from_numpy(data["x"]), torch.from_numpy(data["y"]))


def make_optimizer(phi: torch.Tensor, params: ExponentParams, lr: float) -> torch.optim.Optimizer:
    # momentum / betas / alpha / eps; with hparams=native, what the user left unset is torch's default
    kwargs = native_kwargs("torch", params.optimizer, params.optimizer_hparams())
    if params.optimizer == "sgd":
        return torch.optim.SGD([phi], lr=lr, **kwargs)
    if params.optimizer == "adam":
        return torch.optim.Adam([phi], lr=lr, **kwargs)
    return torch.optim.RMSprop([phi], lr=lr, **kwargs)


class ExponentRunner:
    """Training steps for the measurement harness (see spotdiff.measure.StepRunner)."""

    whole_loop = False

    def __init__(self, mode: str, variant: str, params: ExponentParams, data: dict[str, np.ndarray]):
        device = env.device()
        self.params = params
        self.x = torch.from_numpy(data["x"]).to(device)  # (N,)
        self.y = torch.from_numpy(data["y"]).to(device)  # (N,)
        self.phi = torch.tensor(params.init_phi, dtype=torch.float32, device=device, requires_grad=True)
        self.lr = params.learning_rate(variant)
        self.optimizer = make_optimizer(self.phi, params, self.lr) if variant == "optimizer" else None
        step = self._optimizer_step if self.optimizer else self._manual_step
        self.train_step = torch.compile(step) if mode == "compile" else step

    def _manual_step(self) -> torch.Tensor:
        loss = loss_fn(self.phi, self.x, self.y)
        loss.backward()
        with torch.no_grad():
            self.phi -= self.lr * self.phi.grad  # the hand-written update of the post
            self.phi.grad.zero_()
        return loss.detach()

    def _optimizer_step(self) -> torch.Tensor:
        self.optimizer.zero_grad()
        loss = loss_fn(self.phi, self.x, self.y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def reset(self) -> None:
        with torch.no_grad():
            self.phi.fill_(self.params.init_phi)
        self.phi.grad = None
        if self.optimizer:
            self.optimizer.state.clear()

    def compile(self, steps: int) -> None:
        raise NotImplementedError("torch modes run step by step")

    def run(self, steps: int) -> Any:
        losses, phis = [], []
        for _ in range(steps):
            loss = self.train_step()
            if self.params.record_series:
                losses.append(loss)
                phis.append(self.phi.detach().clone())
        return (losses, phis)

    def sync(self, handle: Any) -> None:
        env.sync()

    def fetch(self, handle: Any) -> dict[str, np.ndarray]:
        losses, phis = handle
        if not losses:
            return {}
        return {"loss": torch.stack(losses).cpu().numpy(), "phi": torch.stack(phis).cpu().numpy()}

    def final_metrics(self) -> dict[str, float]:
        with torch.no_grad():
            loss = loss_fn(self.phi, self.x, self.y)
        return {"final_phi": float(self.phi.item()), "final_loss": float(loss.item())}


def build_runner(
    mode: str, variant: str, params: ExponentParams, data: dict[str, np.ndarray], threads: int = 1
):
    return ExponentRunner(mode, variant, params, data)


class LossModel(torch.nn.Module):
    """phi as a parameter and the loss as forward(): the model torch.export captures for TensorBoard."""

    def __init__(self, phi: torch.Tensor):
        super().__init__()
        self.phi = torch.nn.Parameter(phi.detach().clone())

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(self.phi, x, y)


def write_tensorboard(runner: ExponentRunner, board: Any, series: dict[str, list[float]]) -> None:
    """After timing: phi and its gradient every K steps, the learning rate, the exported graph."""
    from spotdiff.backends.torch.tensorboard import write_graph

    def gradient_at(phis: np.ndarray) -> np.ndarray:  # autograd at each recorded phi, batched
        grad = torch.func.vmap(torch.func.grad(loss_fn), in_dims=(0, None, None))
        return grad(torch.from_numpy(phis).to(runner.x.device), runner.x, runner.y).cpu().numpy()

    board.trajectory_histograms("phi", runner.params.init_phi, series.get("phi", []), gradient_at)
    board.step_scalars({"train/learning_rate": [runner.lr] * runner.params.steps})
    write_graph(board, LossModel(runner.phi), (runner.x, runner.y))


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

    align {"rmsprop_eps": "inside"}: RMSprop with eps inside the square root, g / sqrt(v + eps) as
    Keras and Optax compute it (torch.optim.RMSprop has no such option: the update is written out).
    align {"adam_eps": "hat"}: Adam as Keras computes it, eps added to sqrt(v) before the bias
    correction (written out too: torch.optim.Adam adds it to sqrt(v_hat)).
    """
    real = getattr(torch, dtype)
    x, y = torch.from_numpy(data["x"]).to(real), torch.from_numpy(data["y"]).to(real)  # (N,)
    phi = torch.tensor(params.init_phi, dtype=real, requires_grad=True)
    lr = params.learning_rate(variant)
    optimizer = make_optimizer(phi, params, lr) if variant == "optimizer" else None
    eps_inside = (
        optimizer is not None and params.optimizer == "rmsprop" and align.get("rmsprop_eps") == "inside"
    )
    eps_hat = optimizer is not None and params.optimizer == "adam" and align.get("adam_eps") == "hat"
    square_avg, first_moment, adam_step = torch.zeros_like(phi), torch.zeros_like(phi), [0]

    def step() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        power = x**phi  # (N,): the one "layer"
        loss = torch.mean((power - y) ** 2)
        (grad,) = torch.autograd.grad(loss, phi)
        with torch.no_grad():
            if optimizer is None:
                phi.sub_(lr * grad)
            elif eps_inside:
                group = optimizer.param_groups[0]  # torch's alpha and eps, as make_optimizer chose
                square_avg.mul_(group["alpha"]).add_((1 - group["alpha"]) * grad * grad)
                phi.sub_(lr * grad / torch.sqrt(square_avg + group["eps"]))
            elif eps_hat:
                group = optimizer.param_groups[0]  # torch's betas and eps, as make_optimizer chose
                (beta1, beta2), adam_step[0] = group["betas"], adam_step[0] + 1
                first_moment.mul_(beta1).add_((1 - beta1) * grad)
                square_avg.mul_(beta2).add_((1 - beta2) * grad * grad)
                alpha = lr * (1 - beta2 ** adam_step[0]) ** 0.5 / (1 - beta1 ** adam_step[0])
                phi.sub_(alpha * first_moment / (torch.sqrt(square_avg) + group["eps"]))
            else:
                phi.grad = grad
                optimizer.step()
        return power.detach(), loss.detach(), grad

    run_step = torch.compile(step) if mode == "compile" else step
    tensors: dict[str, np.ndarray] = {}
    for index in range(steps):
        power, loss, grad = run_step()
        tensors[f"{index}/forward/power"] = power.numpy().copy()
        tensors[f"{index}/loss"] = loss.numpy().copy()
        tensors[f"{index}/grad/phi"] = grad.numpy().copy()
        tensors[f"{index}/param/phi"] = phi.detach().numpy().copy()
    optimizer_name = params.optimizer if optimizer is not None else None
    return {
        "tensors": tensors,
        "layers": [("power", "power")],
        "params": ["phi"],
        "optimizer": optimizer_name,
        "aligned": ["rmsprop_eps"] if eps_inside else ["adam_eps"] if eps_hat else [],
    }
