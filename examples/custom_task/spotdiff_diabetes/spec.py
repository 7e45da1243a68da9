"""Neutral spec of the `diabetes` task: data, shared initial weights, hyper-parameters, parity."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from spotdiff.parity import Check, compare, legacy_keys
from spotdiff.tasks.base import TaskSpec

PARITY_LOSS_TOL = 1e-4  # max |loss_a(t) - loss_b(t)| over the run, absolute, float32, standardised targets


class DiabetesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(300, ge=1, description="full-batch Adam steps")
    lr: float = Field(0.01, gt=0, description="Adam learning rate")
    hidden: int = Field(32, ge=1, description="hidden units")
    block_steps: int = Field(50, ge=1, description="steps between two clock reads")
    warmup_steps: int = Field(50, ge=0, description="leading steps left out of the steady state")
    record_series: bool = True


def build_data(params: DiabetesParams, seed: int) -> dict[str, np.ndarray]:
    """Standardised features and target, a seeded 80/20 split, and shared initial weights."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    y = (y - y.mean()) / y.std()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    bound1, bound2 = 1 / np.sqrt(x.shape[1]), 1 / np.sqrt(params.hidden)
    f32 = np.float32
    return {
        "x_train": x[order[:cut]].astype(f32), "y_train": y[order[:cut], None].astype(f32),  # (N, 10), (N, 1)
        "x_test": x[order[cut:]].astype(f32), "y_test": y[order[cut:], None].astype(f32),
        "w1": rng.uniform(-bound1, bound1, (x.shape[1], params.hidden)).astype(f32),  # (in, out)
        "b1": np.zeros(params.hidden, f32),
        "w2": rng.uniform(-bound2, bound2, (params.hidden, 1)).astype(f32),
        "b2": np.zeros(1, f32),
    }


def derive_metrics(
    metrics: dict[str, Any], series: dict[str, list[float]], params: DiabetesParams
) -> dict[str, Any]:
    return {}


def _read_loss(cell: dict[str, Any]) -> dict[str, Any] | None:
    loss = (cell.get("series") or {}).get("loss")
    return {"loss": loss} if loss else None


def parity(cells: list[dict[str, Any]], params: DiabetesParams) -> dict[str, Any]:
    """Every pair of ok cells: the loss at every step within PARITY_LOSS_TOL (spotdiff.parity:
    NaN/inf or different lengths fail; fewer than two cells are not compared)."""
    result = compare(cells, [Check("loss", "loss(t)", atol=PARITY_LOSS_TOL)], _read_loss)
    return {"adam": {**result, **legacy_keys(result, {"loss(t)": "loss"})}}


SPEC = TaskSpec(
    name="diabetes",
    summary="MLP regression on scikit-learn's diabetes data (example plug-in task)",
    modes={"torch": ("eager",), "tensorflow": ("eager", "graph"), "jax": ("jit",)},
    mode_help={
        ("torch", "eager"): "nn.Sequential + torch.optim.Adam",
        ("tensorflow", "eager"): "Keras Sequential + GradientTape",
        ("tensorflow", "graph"): "the same step in tf.function",
        ("jax", "jit"): "pure function + optax.adam under jax.jit",
    },
    variants=("adam",),
    params=DiabetesParams,
    build_data=build_data,
    derive_metrics=derive_metrics,
    parity=parity,
    headline_metrics=(
        ("steady_step_us", "steady µs/step", "µs", True),
        ("first_step_s", "first step (s)", "s", True),
        ("final_loss", "train MSE", "", True),
        ("test_mse", "test MSE", "", True),
    ),
    plotted_series=(("loss", "train MSE", True),),
)
