"""Numpy reference implementations (float64), one per convention a framework might follow.

`run(component, hp, conventions, case)` returns the same output keys as the framework probes, so
a measured output can be compared against every combination of conventions: the combination
that reproduces a framework is its diagnosed convention. `hp` holds neutral hyper-parameter values
(None where a framework has no such setting); `conventions` maps each axis of the component
(see components.py) to one of its values.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from spotdiff.probes.defaults.components import COMPONENTS

Outputs = dict[str, np.ndarray]


def _num(hp: dict[str, Any], key: str, default: float = 0.0) -> float:
    value = hp.get(key)
    return default if value is None else float(value)


def sgd(case: Outputs, hp: dict[str, Any], conv: dict[str, str]) -> Outputs:
    theta, lr, mu = case["theta0"].astype(np.float64), _num(hp, "lr"), _num(hp, "momentum")
    buf, out = None, []
    for g in case["grads"].astype(np.float64):
        buf = g if buf is None else mu * buf + g  # the buffer starts as the first gradient
        theta = theta - lr * ((g + mu * buf) if hp.get("nesterov") else buf)
        out.append(theta)
    return {"theta": np.array(out)}


def rmsprop(case: Outputs, hp: dict[str, Any], conv: dict[str, str]) -> Outputs:
    theta, lr, rho, eps = case["theta0"].astype(np.float64), _num(hp, "lr"), _num(hp, "rho"), _num(hp, "eps")
    v, out = np.zeros_like(theta), []
    for g in case["grads"].astype(np.float64):
        v = rho * v + (1 - rho) * g * g
        denom = np.sqrt(v) + eps if conv["eps"] == "outside sqrt" else np.sqrt(v + eps)
        theta = theta - lr * g / denom
        out.append(theta)
    return {"theta": np.array(out)}


def adam(case: Outputs, hp: dict[str, Any], conv: dict[str, str]) -> Outputs:
    theta = case["theta0"].astype(np.float64)
    lr, b1, b2, eps, wd = (_num(hp, k) for k in ("lr", "beta1", "beta2", "eps", "weight_decay"))
    m, v, out = np.zeros_like(theta), np.zeros_like(theta), []
    coupled = conv.get("weight_decay", "").startswith("coupled")
    for t, g in enumerate(case["grads"].astype(np.float64), start=1):
        if coupled:
            g = g + wd * theta
        elif wd:
            theta = theta * (1 - lr * wd)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        if conv["eps"].startswith("eps-hat"):
            step = lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        else:
            step = lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        theta = theta - step
        out.append(theta)
    return {"theta": np.array(out)}


def adagrad(case: Outputs, hp: dict[str, Any], conv: dict[str, str]) -> Outputs:
    theta, lr, eps = case["theta0"].astype(np.float64), _num(hp, "lr"), _num(hp, "eps")
    s, out = np.full_like(theta, _num(hp, "initial_accumulator")), []
    for g in case["grads"].astype(np.float64):
        s = s + g * g
        theta = theta - lr * g / (np.sqrt(s) + eps if conv["eps"] == "outside sqrt" else np.sqrt(s + eps))
        out.append(theta)
    return {"theta": np.array(out)}


def dense(case: Outputs, hp: dict[str, Any], conv: dict[str, str]) -> Outputs:
    return {"y": case["x"].astype(np.float64) @ case["weight"].T + case["bias"]}


def conv2d(case: Outputs, hp: dict[str, Any], conv: dict[str, str]) -> Outputs:
    x, w = case["x"].astype(np.float64), case["weight"].astype(np.float64)  # NCHW, OIHW
    k = w.shape[-1]
    if conv["padding"] == "same":  # stride 1: k-1 rows in total, the extra one at the bottom/right
        top = (k - 1) // 2
        x = np.pad(x, ((0, 0), (0, 0), (top, k - 1 - top), (top, k - 1 - top)))
    windows = sliding_window_view(x, (k, k), axis=(2, 3))  # (N, C, H', W', k, k)
    return {"y": np.einsum("nchwij,ocij->nohw", windows, w) + case["bias"][None, :, None, None]}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def lstm(case: Outputs, hp: dict[str, Any], conv: dict[str, str]) -> Outputs:
    x = case["x"].astype(np.float64)
    h_size = case["weight_hh"].shape[1]
    h = c = np.zeros((x.shape[0], h_size))
    out = []
    for t in range(x.shape[1]):
        z = x[:, t] @ case["weight_ih"].T + h @ case["weight_hh"].T + case["bias_ih"] + case["bias_hh"]
        i, f, g, o = np.split(z, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        out.append(h)
    return {"y": np.stack(out, axis=1)}


def gru(case: Outputs, hp: dict[str, Any], conv: dict[str, str]) -> Outputs:
    x = case["x"].astype(np.float64)
    w_ih, w_hh, b_ih, b_hh = (
        case[k].astype(np.float64) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    )
    h_size = w_hh.shape[1]
    w_hr, w_hz, w_hn = np.split(w_hh, 3)
    b_hr, b_hz, b_hn = np.split(b_hh, 3)
    h, out, form = np.zeros((x.shape[0], h_size)), [], conv["reset gate"]
    for t in range(x.shape[1]):
        xr, xz, xn = np.split(x[:, t] @ w_ih.T + b_ih, 3, axis=1)
        r = _sigmoid(xr + h @ w_hr.T + b_hr)
        z = _sigmoid(xz + h @ w_hz.T + b_hz)
        if form.startswith("W_hn (r*h)"):
            n = np.tanh(xn + (r * h) @ w_hn.T + b_hn)
        elif "no b_hn" in form:
            n = np.tanh(xn + r * (h @ w_hn.T))
        else:
            n = np.tanh(xn + r * (h @ w_hn.T + b_hn))
        h = (1 - z) * n + z * h
        out.append(h)
    return {"y": np.stack(out, axis=1)}


def batchnorm(case: Outputs, hp: dict[str, Any], conv: dict[str, str]) -> Outputs:
    m, eps = _num(hp, "momentum"), _num(hp, "eps")
    w, b = case["weight"].astype(np.float64), case["bias"].astype(np.float64)
    mean, var = np.zeros_like(w), np.ones_like(w)
    new_weight = m if conv["momentum"].startswith("weight of the new") else 1 - m
    ddof = 1 if conv["running variance"].startswith("unbiased") else 0
    for batch in case["batches"].astype(np.float64):
        train = (batch - batch.mean(0)) / np.sqrt(batch.var(0) + eps) * w + b
        mean = (1 - new_weight) * mean + new_weight * batch.mean(0)
        var = (1 - new_weight) * var + new_weight * batch.var(0, ddof=ddof)
    evaluated = (case["test"] - mean) / np.sqrt(var + eps) * w + b
    return {"running_mean": mean, "running_var": var, "eval": evaluated, "train_last": train}


def dropout(case: Outputs, hp: dict[str, Any], conv: dict[str, str]) -> Outputs:
    rate = _num(hp, "rate")
    drop = rate if conv["rate"] == "drop probability" else 1 - rate
    kept = 1 / (1 - drop) if conv["scaling"].startswith("kept") else 1.0
    return {"drop_fraction": np.array(drop), "kept_value": np.array(kept)}


def embedding(case: Outputs, hp: dict[str, Any], conv: dict[str, str]) -> Outputs:
    return {"y": case["weight"][case["ids"]].astype(np.float64)}


def cross_entropy(case: Outputs, hp: dict[str, Any], conv: dict[str, str]) -> Outputs:
    z = case["logits"].astype(np.float64)
    if conv["input"].startswith("probabilities"):
        z = np.log(np.clip(z, 1e-7, 1 - 1e-7))  # then renormalised by the softmax below
    log_p = z - z.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    per_example = -log_p[np.arange(len(z)), case["labels"]]
    return {"loss": np.array(per_example.mean()) if conv["reduction"] == "mean" else per_example}


REFERENCES: dict[str, Callable[[Outputs, dict[str, Any], dict[str, str]], Outputs]] = {
    "sgd": sgd,
    "sgd-nesterov": sgd,
    "rmsprop": rmsprop,
    "adam": adam,
    "adam-wd": adam,
    "adamw": adam,
    "adagrad": adagrad,
    "dense": dense,
    "conv2d": conv2d,
    "lstm": lstm,
    "gru": gru,
    "batchnorm": batchnorm,
    "dropout": dropout,
    "embedding": embedding,
    "cross-entropy": cross_entropy,
}


def combinations(component: str) -> list[dict[str, str]]:
    """Every assignment of one value to each convention axis of `component` ([{}] if none)."""
    axes = COMPONENTS[component].axes
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def run(component: str, hp: dict[str, Any], conventions: dict[str, str], case: Outputs) -> Outputs:
    return REFERENCES[component](case, hp, conventions)
