"""The components the defaults audit compares, and the numpy inputs every framework is fed.

Neutral layout = PyTorch's (as in spotdiff.backends.layouts): dense kernels (out, in), conv kernels
OIHW with NCHW inputs, RNN kernels `weight_ih (G*h, in)` / `weight_hh (G*h, h)` with PyTorch's gate
order (LSTM i,f,g,o; GRU r,z,n) and two biases. Sequences are batch-major (B, T, F).
Both the parent and each child build the same arrays from the same seed: nothing is shipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spotdiff.errors import UserError

OPTIMIZER_STEPS = 100  # K: gradient steps fed to every optimiser
GRADIENT_SCALES = 10.0 ** -np.arange(0.0, 6.0, 0.5)  # one coordinate per scale: 1 ... 3e-6


@dataclass(frozen=True)
class Component:
    """One component: what defines it, the neutral values aligned mode passes, what to measure.

    `fixed` settings make the component what it is and apply in both modes; `aligned` values are
    passed explicitly to every framework in aligned mode; `fill` gives a value for an argument a
    framework declares as required (native mode passes nothing else); `axes` are conventions
    (axis -> possible values) told apart by numpy references; `init` names the parameters whose
    default initialisers are sampled at `init_dims`.
    """

    name: str
    kind: str  # optimizer | layer | loss
    summary: str
    fixed: dict[str, Any] = field(default_factory=dict)
    aligned: dict[str, Any] = field(default_factory=dict)
    fill: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    init: tuple[str, ...] = ()
    init_dims: dict[str, int] = field(default_factory=dict)


ADAM_ALIGNED = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7}
ADAM_EPS = ("added to sqrt(v_hat)", "eps-hat: added to sqrt(v), bias correction in lr")
WEIGHT_DECAY = ("coupled: L2 added to the gradient", "decoupled: theta -= lr*wd*theta")
EPS_SQRT = ("outside sqrt", "inside sqrt")
RNN_INIT = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

COMPONENTS: dict[str, Component] = {c.name: c for c in (
    Component("sgd", "optimizer", "SGD with momentum 0.9", fixed={"momentum": 0.9},
              aligned={"lr": 0.01, "momentum": 0.9, "nesterov": False}, fill={"lr": 0.01}),
    Component("sgd-nesterov", "optimizer", "SGD with Nesterov momentum 0.9",
              fixed={"momentum": 0.9, "nesterov": True},
              aligned={"lr": 0.01, "momentum": 0.9, "nesterov": True}, fill={"lr": 0.01}),
    Component("rmsprop", "optimizer", "RMSprop",
              aligned={"lr": 1e-3, "rho": 0.9, "eps": 1e-7, "momentum": 0.0, "centered": False},
              fill={"lr": 1e-3}, axes={"eps": EPS_SQRT}),
    Component("adam", "optimizer", "Adam", aligned=ADAM_ALIGNED, fill={"lr": 1e-3},
              axes={"eps": ADAM_EPS}),
    Component("adam-wd", "optimizer", "Adam with weight_decay=0.01 set", fixed={"weight_decay": 0.01},
              aligned={**ADAM_ALIGNED, "weight_decay": 0.01}, fill={"lr": 1e-3},
              axes={"eps": ADAM_EPS, "weight_decay": WEIGHT_DECAY}),
    Component("adamw", "optimizer", "AdamW", aligned={**ADAM_ALIGNED, "weight_decay": 0.01},
              fill={"lr": 1e-3}, axes={"eps": ADAM_EPS, "weight_decay": WEIGHT_DECAY}),
    Component("adagrad", "optimizer", "Adagrad",
              aligned={"lr": 0.01, "initial_accumulator": 0.1, "eps": 1e-7}, fill={"lr": 0.01},
              axes={"eps": EPS_SQRT}),
    Component("dense", "layer", "Dense / Linear", aligned={"use_bias": True},
              dims={"in": 16, "out": 8, "batch": 4}, init=("weight", "bias"),
              init_dims={"in": 256, "out": 128}),
    Component("conv2d", "layer", "Conv2D 3x3, stride 1",
              aligned={"padding": "valid", "strides": 1, "use_bias": True},
              axes={"padding": ("valid", "same")},
              dims={"cin": 3, "cout": 4, "k": 3, "hw": 8, "batch": 2}, init=("weight", "bias"),
              init_dims={"cin": 16, "cout": 32, "k": 3}),
    Component("lstm", "layer", "LSTM, one layer", aligned={"use_bias": True, "batch_major": True},
              dims={"in": 5, "hidden": 6, "steps": 7, "batch": 3, "gates": 4}, init=RNN_INIT,
              init_dims={"in": 32, "hidden": 64, "gates": 4}),
    Component("gru", "layer", "GRU, one layer",
              aligned={"use_bias": True, "batch_major": True, "reset_after": True},
              axes={"reset gate": ("r*(W_hn h + b_hn)", "r*(W_hn h), no b_hn", "W_hn (r*h) + b_hn")},
              dims={"in": 5, "hidden": 6, "steps": 7, "batch": 3, "gates": 3}, init=RNN_INIT,
              init_dims={"in": 32, "hidden": 64, "gates": 3}),
    Component("batchnorm", "layer", "BatchNorm over features, 20 training batches",
              aligned={"momentum": 0.9, "eps": 1e-3},
              axes={"momentum": ("weight of the new batch statistic", "weight of the old running value"),
                    "running variance": ("unbiased (n-1)", "biased (n)")},
              dims={"features": 4, "batch": 16, "steps": 20}, init=("weight", "bias"),
              init_dims={"features": 64}),
    Component("dropout", "layer", "Dropout in training mode", fill={"rate": 0.3}, aligned={"rate": 0.3},
              axes={"rate": ("drop probability", "keep probability"),
                    "scaling": ("kept values / (1 - drop)", "none")},
              dims={"rows": 200, "cols": 500}),
    Component("embedding", "layer", "Embedding lookup", dims={"vocab": 50, "dim": 8},
              init=("weight",), init_dims={"vocab": 1000, "dim": 64}),
    Component("cross-entropy", "loss", "cross-entropy with integer labels",
              aligned={"from_logits": True, "reduction": "mean"},
              axes={"input": ("logits", "probabilities (clipped to [1e-7, 1-1e-7])"),
                    "reduction": ("mean", "none (per example)")},
              dims={"batch": 16, "classes": 5}),
)}

GROUPS = {
    "optimizers": [n for n, c in COMPONENTS.items() if c.kind == "optimizer"],
    "layers": [n for n, c in COMPONENTS.items() if c.kind == "layer"],
    "losses": [n for n, c in COMPONENTS.items() if c.kind == "loss"],
}


def select(names: list[str] | None) -> list[str]:
    """Component names (or group names) -> component names in registry order; UserError if unknown."""
    if not names:
        return list(COMPONENTS)
    wanted: set[str] = set()
    for name in names:
        key = name.strip().lower()
        if key in GROUPS:
            wanted.update(GROUPS[key])
        elif key in COMPONENTS:
            wanted.add(key)
        else:
            choices = ", ".join([*GROUPS, *COMPONENTS])
            raise UserError(f"unknown component {name!r}; choose from: {choices}")
    return [n for n in COMPONENTS if n in wanted]


def optimizer_case(seed: int, steps: int = OPTIMIZER_STEPS) -> dict[str, np.ndarray]:
    """theta0 (P,) and a gradient stream (K, P): coordinate i has scale GRADIENT_SCALES[i] and a
    steady drift, so epsilon conventions show on the small coordinates."""
    rng = np.random.default_rng(seed)
    drift = rng.choice([-0.5, 0.5], size=GRADIENT_SCALES.size)
    grads = GRADIENT_SCALES * (drift + rng.normal(size=(steps, GRADIENT_SCALES.size)))
    theta0 = rng.normal(size=GRADIENT_SCALES.size)
    return {"theta0": theta0.astype(np.float32), "grads": grads.astype(np.float32)}


def layer_case(name: str, seed: int) -> dict[str, np.ndarray]:
    """Weights (neutral layout) and inputs for one layer or loss component."""
    d, rng = COMPONENTS[name].dims, np.random.default_rng(seed)

    def uniform(*shape: int, bound: float = 0.5) -> np.ndarray:
        return rng.uniform(-bound, bound, size=shape).astype(np.float32)

    if name == "dense":
        return {"weight": uniform(d["out"], d["in"]), "bias": uniform(d["out"]),
                "x": uniform(d["batch"], d["in"], bound=2)}
    if name == "conv2d":
        return {
            "weight": uniform(d["cout"], d["cin"], d["k"], d["k"]),
            "bias": uniform(d["cout"]),
            "x": uniform(d["batch"], d["cin"], d["hw"], d["hw"], bound=2),
        }  # NCHW
    if name in ("lstm", "gru"):
        g, h, i = d["gates"], d["hidden"], d["in"]
        return {
            "weight_ih": uniform(g * h, i),
            "weight_hh": uniform(g * h, h),
            "bias_ih": uniform(g * h),
            "bias_hh": uniform(g * h),
            "x": uniform(d["batch"], d["steps"], i, bound=1),
        }
    if name == "batchnorm":
        f = d["features"]
        shift = rng.normal(size=f) * 3
        batches = (shift + 2 * rng.normal(size=(d["steps"], d["batch"], f))).astype(np.float32)
        return {
            "weight": (1 + uniform(f)),
            "bias": uniform(f),
            "batches": batches,
            "test": (shift + 2 * rng.normal(size=(d["batch"], f))).astype(np.float32),
        }
    if name == "dropout":
        return {"x": np.ones((d["rows"], d["cols"]), np.float32)}
    if name == "embedding":
        return {
            "weight": uniform(d["vocab"], d["dim"]),
            "ids": rng.integers(0, d["vocab"], size=(4, 6)).astype(np.int64),
        }
    if name == "cross-entropy":
        return {
            "logits": (2 * rng.normal(size=(d["batch"], d["classes"]))).astype(np.float32),
            "labels": rng.integers(0, d["classes"], size=d["batch"]).astype(np.int64),
        }
    raise KeyError(name)


def init_candidates(name: str) -> list[tuple[str, str, Any]]:
    """Initialiser hypotheses for `name`'s parameters at `init_dims`: (label, family, scale).

    Families: uniform (scale = bound), normal / truncnormal (scale = std), const (value),
    blocks (per-gate constants), orthogonal. Measured samples pick the hypothesis.
    """
    d = COMPONENTS[name].init_dims
    if name == "dense":
        fan_in, fan_out = d["in"], d["out"]
    elif name == "conv2d":
        fan_in, fan_out = d["cin"] * d["k"] ** 2, d["cout"] * d["k"] ** 2
    elif name in ("lstm", "gru"):
        fan_in, fan_out = d["in"], d["gates"] * d["hidden"]
    elif name == "embedding":
        fan_in, fan_out = d["dim"], d["vocab"]
    else:
        fan_in = fan_out = d.get("features", 1)
    found = [
        ("U(±1/sqrt(fan_in))", "uniform", fan_in**-0.5),
        ("glorot uniform U(±sqrt(6/(fan_in+fan_out)))", "uniform", (6 / (fan_in + fan_out)) ** 0.5),
        ("lecun normal: truncated normal, std 1/sqrt(fan_in)", "truncnormal", fan_in**-0.5),
        ("normal, std 1/sqrt(fan_in)", "normal", fan_in**-0.5),
        ("N(0, 1)", "normal", 1.0),
        ("U(±0.05)", "uniform", 0.05),
        ("N(0, 0.05²)", "normal", 0.05),
        ("zeros", "const", 0.0),
        ("ones", "const", 1.0),
        ("orthogonal", "orthogonal", None),
    ]
    if name in ("lstm", "gru"):
        found.insert(0, ("U(±1/sqrt(hidden))", "uniform", d["hidden"] ** -0.5))
    if name == "lstm":
        found.append(("zeros, forget-gate block ones", "blocks", (0.0, 1.0, 0.0, 0.0)))
    return found
