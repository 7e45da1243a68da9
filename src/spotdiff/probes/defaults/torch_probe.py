"""PyTorch side of the defaults audit. tf_probe.py and jax_probe.py have the same functions, in
the same order: `versions`, `declared`, `run_optimizer`, `run_layer`, `sample_init`.

Inputs and outputs are numpy arrays in the neutral layout (components.py), which is PyTorch's own,
so the only conversion here is the sequence layout when `batch_first` is False.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import nn

from spotdiff.backends.torch.weights import load_neutral
from spotdiff.hparams import REQUIRED, TORCH_INIT
from spotdiff.probes.defaults.components import COMPONENTS

OPTIMIZERS = {
    "sgd": torch.optim.SGD, "sgd-nesterov": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
    "adam": torch.optim.Adam, "adam-wd": torch.optim.Adam, "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
}
LAYERS = {
    "dense": nn.Linear, "conv2d": nn.Conv2d, "lstm": nn.LSTM, "gru": nn.GRU, "batchnorm": nn.BatchNorm1d,
    "dropout": nn.Dropout, "embedding": nn.Embedding, "cross-entropy": nn.CrossEntropyLoss,
}


def versions() -> dict[str, str]:
    return {"torch": torch.__version__}


def declared(component: str) -> dict[str, Any]:
    """Argument -> default from the installed signature (REQUIRED when it has none), plus the
    initialiser calls of `reset_parameters` (PyTorch declares initialisers in code)."""
    cls = OPTIMIZERS.get(component) or LAYERS[component]
    init = nn.RNNBase.__init__ if component in ("lstm", "gru") else cls.__init__
    found: dict[str, Any] = {}
    for p in inspect.signature(init).parameters.values():
        if p.name not in ("self", "params", "mode") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            found[p.name] = REQUIRED if p.default is p.empty else p.default
    if hasattr(cls, "reset_parameters"):
        lines = inspect.getsource(cls.reset_parameters).splitlines()
        found[TORCH_INIT] = "; ".join(line.strip() for line in lines if "init." in line)
    return found


def run_optimizer(
    component: str, kwargs: dict[str, Any], case: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Feed the gradient stream to the optimiser; theta after every step, (K, P)."""
    theta = nn.Parameter(torch.from_numpy(case["theta0"].copy()))
    optimizer = OPTIMIZERS[component]([theta], **kwargs)
    out = np.empty_like(case["grads"])
    for step, grad in enumerate(case["grads"]):
        theta.grad = torch.from_numpy(grad.copy())
        optimizer.step()
        out[step] = theta.detach().numpy()
    return {"theta": out}


def _rnn(component: str, kwargs: dict[str, Any], case: dict[str, np.ndarray]) -> np.ndarray:
    d = COMPONENTS[component].dims
    layer = LAYERS[component](d["in"], d["hidden"], **kwargs)
    load_neutral(layer, {f"{k}_l0": case[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    x = torch.from_numpy(case["x"])  # (B, T, F)
    if not layer.batch_first:  # the default: (T, B, F)
        return layer(x.transpose(0, 1))[0].transpose(0, 1)
    return layer(x)[0]


def run_layer(
    component: str, kwargs: dict[str, Any], case: dict[str, np.ndarray], seed: int
) -> dict[str, np.ndarray]:
    """One forward computation with the neutral weights loaded; outputs in the neutral layout."""
    torch.manual_seed(seed)
    d, t = COMPONENTS[component].dims, {k: torch.from_numpy(v) for k, v in case.items()}
    with torch.no_grad():
        if component == "dense":
            layer = nn.Linear(d["in"], d["out"], **kwargs)
            load_neutral(layer, {"weight": case["weight"], "bias": case["bias"]})
            return {"y": layer(t["x"]).numpy()}
        if component == "conv2d":
            layer = nn.Conv2d(d["cin"], d["cout"], d["k"], **kwargs)
            load_neutral(layer, {"weight": case["weight"], "bias": case["bias"]})
            return {"y": layer(t["x"]).numpy()}  # NCHW
        if component in ("lstm", "gru"):
            return {"y": _rnn(component, kwargs, case).numpy()}
        if component == "batchnorm":
            layer = nn.BatchNorm1d(d["features"], **kwargs)
            load_neutral(layer, {"weight": case["weight"], "bias": case["bias"]})
            layer.train()
            for batch in t["batches"]:
                train_last = layer(batch)
            layer.eval()
            return {
                "running_mean": layer.running_mean.numpy(),
                "running_var": layer.running_var.numpy(),
                "eval": layer(t["test"]).numpy(),
                "train_last": train_last.numpy(),
            }
        if component == "dropout":
            return {"y": nn.Dropout(**kwargs).train()(t["x"]).numpy()}
        if component == "embedding":
            layer = nn.Embedding(d["vocab"], d["dim"])
            load_neutral(layer, {"weight": case["weight"]})
            return {"y": layer(t["ids"]).numpy()}
        if component == "cross-entropy":
            return {"loss": nn.CrossEntropyLoss(**kwargs)(t["logits"], t["labels"]).numpy()}
    raise KeyError(component)


def sample_init(component: str, seed: int) -> dict[str, np.ndarray]:
    """Parameters of a freshly built layer at the component's `init_dims`, neutral names/layout."""
    torch.manual_seed(seed)
    d = COMPONENTS[component].init_dims
    if component == "dense":
        layer = nn.Linear(d["in"], d["out"])
    elif component == "conv2d":
        layer = nn.Conv2d(d["cin"], d["cout"], d["k"])
    elif component in ("lstm", "gru"):
        layer = LAYERS[component](d["in"], d["hidden"])
    elif component == "batchnorm":
        layer = nn.BatchNorm1d(d["features"])
    elif component == "embedding":
        layer = nn.Embedding(d["vocab"], d["dim"])
    else:
        return {}
    return {name.removesuffix("_l0"): p.detach().numpy().copy() for name, p in layer.named_parameters()}
