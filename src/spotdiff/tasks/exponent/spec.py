"""The post's first experiment: recover phi in f(x) = x**phi from samples, by gradient descent.

Neutral facts only: data, hyper-parameters, derived metrics and parity tolerances live here once;
`torch_impl.py`, `tf_impl.py` and `jax_impl.py` implement the same training in each framework.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from spotdiff.parity import Check, compare, legacy_keys
from spotdiff.tasks.base import TaskSpec

# Learning rates chosen once so that every variant converges well inside the default 2000 steps.
DEFAULT_LR = {"manual": 1.0, "sgd": 0.1, "adam": 0.01, "rmsprop": 0.01}
PARITY_TRAJECTORY_TOL = 1e-3  # max |phi_a(t) - phi_b(t)| over all steps, float32, absolute
PARITY_FINAL_TOL = 1e-4  # |final phi_a - final phi_b|, absolute
PARITY_CHECKS = (
    Check("phi", "phi(t)", atol=PARITY_TRAJECTORY_TOL),
    Check("final_phi", "final phi", atol=PARITY_FINAL_TOL),
    # The loss spans ~1e-1 to ~1e-12 over a run: relative to each value, with an absolute floor for
    # the converged tail where both frameworks sit at rounding level.
    Check("loss", "loss(t)", atol=1e-6, rtol=1e-3),
)
# hparams=aligned passes these to every framework when the user did not set them; hparams=native
# leaves them to each framework (Keras Adam eps 1e-7 vs 1e-8, RMSprop rho 0.9 vs torch alpha 0.99).
ALIGNED_OPTIMIZER_DEFAULTS = {"rho": 0.9, "eps": 1e-7}
OPTIMIZER_KEYS = {"sgd": ("momentum",), "adam": ("beta1", "beta2", "eps"), "rmsprop": ("rho", "eps")}


class ExponentParams(BaseModel):
    """Every `--set` key of the exponent task, with its default."""

    model_config = ConfigDict(extra="forbid")

    n_samples: int = Field(1000, ge=2, description="number of (x, f(x)) samples")
    true_phi: float = Field(3.0, description="the exponent the data is generated with")
    init_phi: float = Field(1.0, description="where phi starts")
    steps: int = Field(2000, ge=1, description="training steps (full-batch gradient steps)")
    optimizer: Literal["sgd", "adam", "rmsprop"] = Field(
        "sgd", description="optimizer of the `optimizer` variant"
    )
    lr: float | None = Field(
        None, gt=0, description="learning rate; default per variant/optimizer: " + str(DEFAULT_LR)
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    beta1: float = Field(0.9, ge=0, lt=1, description="Adam beta1")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2")
    rho: float | None = Field(
        None, ge=0, lt=1, description="RMSprop decay (torch alpha, optax decay); unset: 0.9 when aligned"
    )
    eps: float | None = Field(None, gt=0, description="Adam/RMSprop epsilon; unset: 1e-7 when aligned")
    hparams: Literal["aligned", "native"] = Field(
        "aligned", description="aligned: pass every optimizer setting; native: unset rho/eps take each "
        "framework's own default (lr, momentum and betas are always passed)"
    )
    converge_tol: float = Field(1e-2, gt=0, description="|phi - true_phi| that counts as converged")
    record_series: bool = Field(True, description="record loss and phi at every step")
    block_steps: int = Field(50, ge=1, description="steps between two clock reads")
    warmup_steps: int = Field(100, ge=0, description="leading steps left out of the steady state")

    def learning_rate(self, variant: str) -> float:
        if self.lr is not None:
            return self.lr
        return DEFAULT_LR["manual" if variant == "manual" else self.optimizer]

    def optimizer_hparams(self) -> dict[str, float]:
        """Neutral settings of `optimizer` to pass explicitly (names as in spotdiff.hparams):
        every one when aligned; when native only those the user set, plus momentum and betas."""
        chosen = {}
        for key in OPTIMIZER_KEYS[self.optimizer]:
            value = getattr(self, key)
            if value is None and self.hparams == "aligned":
                value = ALIGNED_OPTIMIZER_DEFAULTS[key]
            if value is not None:
                chosen[key] = value
        return chosen


def build_data(params: ExponentParams, seed: int) -> dict[str, np.ndarray]:
    """x ~ U(0, 1) from a seeded generator and y = x**true_phi, both float32, shape (N,)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=params.n_samples)
    y = x**params.true_phi
    return {"x": x.astype(np.float32), "y": y.astype(np.float32)}


def derive_metrics(
    metrics: dict[str, Any], series: dict[str, list[float]], params: ExponentParams
) -> dict[str, Any]:
    """phi_error and steps_to_converge from what the cell recorded."""
    derived: dict[str, Any] = {}
    final_phi = metrics.get("final_phi")
    if final_phi is not None:
        derived["phi_error"] = abs(final_phi - params.true_phi)
    phis = series.get("phi")
    derived["steps_to_converge"] = None
    if phis:
        for step, phi in enumerate(phis, start=1):
            if abs(phi - params.true_phi) < params.converge_tol:
                derived["steps_to_converge"] = step
                break
    return derived


def _read_run(cell: dict[str, Any]) -> dict[str, Any] | None:
    """phi and loss at every step and the final phi; None when the cell recorded no series."""
    series, final_phi = cell.get("series") or {}, (cell.get("metrics") or {}).get("final_phi")
    if not series.get("phi"):
        return None
    final = [np.nan if final_phi is None else final_phi]
    return {"phi": series["phi"], "loss": series.get("loss") or [], "final_phi": final}


def parity(cells: list[dict[str, Any]], params: ExponentParams) -> dict[str, Any]:
    """Per variant, every pair of ok cells: phi(t), loss(t) and final phi within PARITY_CHECKS
    (spotdiff.parity: NaN/inf or different lengths fail; fewer than two cells are not compared)."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        by_variant.setdefault(cell["variant"], []).append(cell)
    report: dict[str, Any] = {}
    for variant, group in by_variant.items():
        result = compare(group, list(PARITY_CHECKS), _read_run)
        report[variant] = {**result, **legacy_keys(result, {"phi(t)": "trajectory", "final phi": "final"})}
        broken = any(f["kind"] != "tolerance" for f in result["failures"])
        if variant == "optimizer" and params.hparams == "native" and not broken:  # differing is the finding
            report[variant]["summary"] = ("not expected with --hparams native (each framework's own "
                                          "optimizer defaults): " + report[variant]["summary"])
            report[variant].update(passed=None, expected=False, verdict="not expected")
    return report


SPEC = TaskSpec(
    name="exponent",
    summary="fit phi in f(x) = x**phi (the post's first experiment)",
    modes={
        "torch": ("eager", "compile"),
        "tensorflow": ("eager", "graph", "xla", "session"),
        "jax": ("eager", "jit", "fused"),
    },
    mode_help={
        ("torch", "eager"): "autograd op by op",
        ("torch", "compile"): "torch.compile of the training step (forward, backward, update)",
        ("tensorflow", "eager"): "GradientTape, no tf.function",
        ("tensorflow", "graph"): "tf.function train step",
        ("tensorflow", "xla"): "tf.function(jit_compile=True) train step",
        ("tensorflow", "session"): "tf.compat.v1 graph, placeholders and Session.run",
        ("jax", "eager"): "op by op: no jax.jit around the step",
        ("jax", "jit"): "jax.jit train step",
        ("jax", "fused"): "whole loop as one program (lax.scan)",
    },
    variants=("manual", "optimizer"),
    params=ExponentParams,
    build_data=build_data,
    derive_metrics=derive_metrics,
    parity=parity,
    where_steps=5,
    compiling_modes={
        "torch": ("compile",), "tensorflow": ("graph", "xla", "session"), "jax": ("jit", "fused"),
    },
    # The post's experiment, each framework the way its users write it and in its fastest mode
    # here (torch.compile is slower than eager on 1,000 scalars: BENCHMARKS.md).
    default_run=True,
    default_modes={"torch": ("eager",), "tensorflow": ("graph", "xla"), "jax": ("jit", "fused")},
    headline_metrics=(
        ("steady_step_us", "steady µs/step", "µs", True),
        ("first_step_s", "first step (s)", "s", True),
        ("steps_to_converge", "steps to converge", "steps", True),
        ("phi_error", "|phi - true|", "", True),
        ("peak_rss_mb", "peak RSS (MB)", "MB", True),
        ("import_s", "import (s)", "s", True),
    ),
    plotted_series=(("loss", "loss (MSE)", True), ("phi", "phi", False)),
    training="steps",
    tensorboard="own",  # each impl's write_tensorboard: the graph, phi and gradient
    debug_graph_targets=("torch", "tensorflow", "jax"),
)
