"""JAX (Optax, Flax NNX) side of the defaults audit. torch_probe.py and tf_probe.py have the same
functions, in the same order: `versions`, `declared`, `run_optimizer`, `run_layer`, `sample_init`.

Flax keeps channels-last layouts like Keras: dense kernels (in, out), conv kernels HWIO with NHWC
inputs. Its LSTMCell has one dense layer per gate (input side without bias, hidden side with one);
its GRUCell has a biased input layer and an unbiased recurrent layer. Conversions happen here.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from spotdiff.backends.layouts import conv_hwio_to_oihw, conv_oihw_to_hwio, dense_to_in_out
from spotdiff.hparams import REQUIRED
from spotdiff.probes.defaults.components import COMPONENTS

OPTIMIZERS = {
    "sgd": optax.sgd, "sgd-nesterov": optax.sgd, "rmsprop": optax.rmsprop, "adam": optax.adam,
    "adam-wd": optax.adam, "adamw": optax.adamw, "adagrad": optax.adagrad,
}
LAYERS = {
    "dense": nnx.Linear, "conv2d": nnx.Conv, "lstm": nnx.LSTMCell, "gru": nnx.GRUCell,
    "batchnorm": nnx.BatchNorm, "dropout": nnx.Dropout, "embedding": nnx.Embed,
    "cross-entropy": optax.softmax_cross_entropy_with_integer_labels,
}
LSTM_GATES = (("ii", "hi"), ("if_", "hf"), ("ig", "hg"), ("io", "ho"))  # neutral order i, f, g, o


def versions() -> dict[str, str]:
    import flax

    return {"jax": jax.__version__, "optax": optax.__version__, "flax": flax.__version__}


def _describe(value: Any) -> Any:
    """Initialiser closures -> `variance_scaling(scale=1.0, mode='fan_in', ...)`, read from the closure."""
    if not callable(value):
        return value
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None) or repr(value)
    code, closure = getattr(value, "__code__", None), getattr(value, "__closure__", None)
    if code is None or not closure:
        return name
    args = {n: c.cell_contents for n, c in zip(code.co_freevars, closure)
            if isinstance(c.cell_contents, (int, float, str, bool))}
    return f"{name.replace('.<locals>.init', '')}({', '.join(f'{k}={v!r}' for k, v in args.items())})"


def declared(component: str) -> dict[str, Any]:
    """Argument -> default from the installed signature (REQUIRED when it has none)."""
    target = OPTIMIZERS.get(component) or LAYERS[component]
    target = target.__init__ if inspect.isclass(target) else target
    found: dict[str, Any] = {}
    for p in inspect.signature(target).parameters.values():
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            found[p.name] = REQUIRED if p.default is p.empty else _describe(p.default)
    return found


def run_optimizer(
    component: str, kwargs: dict[str, Any], case: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Feed the gradient stream to the optimiser; theta after every step, (K, P)."""
    optimizer = OPTIMIZERS[component](**kwargs)

    @jax.jit
    def step(theta, state, grad):
        updates, state = optimizer.update(grad, state, theta)
        return optax.apply_updates(theta, updates), state

    theta = jnp.asarray(case["theta0"])
    state = optimizer.init(theta)
    out = np.empty_like(case["grads"])
    for index, grad in enumerate(case["grads"]):
        theta, state = step(theta, state, jnp.asarray(grad))
        out[index] = np.asarray(theta)
    return {"theta": out}


def _set(param: nnx.Param, value: np.ndarray) -> None:
    if tuple(param.value.shape) != value.shape:
        raise ValueError(f"shape {tuple(param.value.shape)} expected, got {value.shape}")
    param.value = jnp.asarray(value)


def _rnn(component: str, kwargs: dict[str, Any], case: dict[str, np.ndarray], seed: int) -> dict[str, Any]:
    d = COMPONENTS[component].dims
    cell = LAYERS[component](d["in"], d["hidden"], rngs=nnx.Rngs(seed), **kwargs)
    w_ih, w_hh, b_ih, b_hh = (case[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    out: dict[str, Any] = {}
    if component == "lstm":
        for g, (i_name, h_name) in enumerate(LSTM_GATES):
            rows = slice(g * d["hidden"], (g + 1) * d["hidden"])
            _set(getattr(cell, i_name).kernel, w_ih[rows].T)
            _set(getattr(cell, h_name).kernel, w_hh[rows].T)
            _set(getattr(cell, h_name).bias, b_ih[rows] + b_hh[rows])
    else:  # the recurrent layer has no bias: b_hh of r and z fold into the input bias, n's cannot
        _set(cell.dense_i.kernel, w_ih.T)
        _set(cell.dense_h.kernel, w_hh.T)
        h = d["hidden"]
        _set(cell.dense_i.bias, b_ih + np.concatenate([b_hh[: 2 * h], np.zeros(h, np.float32)]))
        out["_note"] = "GRUCell has no recurrent bias: b_hh of the n gate could not be loaded"
    out["y"] = np.asarray(nnx.RNN(cell)(jnp.asarray(case["x"])))  # (B, T, h), batch-major
    return out


def run_layer(
    component: str, kwargs: dict[str, Any], case: dict[str, np.ndarray], seed: int
) -> dict[str, Any]:
    """One forward computation with the neutral weights loaded; outputs in the neutral layout."""
    d, rngs = COMPONENTS[component].dims, nnx.Rngs(seed)
    if component == "dense":
        layer = nnx.Linear(d["in"], d["out"], rngs=rngs, **kwargs)
        _set(layer.kernel, dense_to_in_out(case["weight"]))
        _set(layer.bias, case["bias"])
        return {"y": np.asarray(layer(jnp.asarray(case["x"])))}
    if component == "conv2d":
        layer = nnx.Conv(d["cin"], d["cout"], (d["k"], d["k"]), rngs=rngs, **kwargs)
        _set(layer.kernel, conv_oihw_to_hwio(case["weight"]))
        _set(layer.bias, case["bias"])
        y = np.asarray(layer(jnp.asarray(case["x"].transpose(0, 2, 3, 1))))  # NCHW -> NHWC
        return {"y": y.transpose(0, 3, 1, 2)}
    if component in ("lstm", "gru"):
        return _rnn(component, kwargs, case, seed)
    if component == "batchnorm":
        layer = nnx.BatchNorm(d["features"], rngs=rngs, **kwargs)
        _set(layer.scale, case["weight"])
        _set(layer.bias, case["bias"])
        for batch in case["batches"]:
            train_last = layer(jnp.asarray(batch))  # use_running_average=False: training
        evaluated = layer(jnp.asarray(case["test"]), use_running_average=True)
        return {
            "running_mean": np.asarray(layer.mean.value),
            "running_var": np.asarray(layer.var.value),
            "eval": np.asarray(evaluated),
            "train_last": np.asarray(train_last),
        }
    if component == "dropout":
        layer = nnx.Dropout(rngs=nnx.Rngs(dropout=seed), **kwargs)
        return {"y": np.asarray(layer(jnp.asarray(case["x"])))}
    if component == "embedding":
        layer = nnx.Embed(d["vocab"], d["dim"], rngs=rngs)
        _set(layer.embedding, case["weight"])
        return {"y": np.asarray(layer(jnp.asarray(case["ids"])))}
    if component == "cross-entropy":
        reduction = kwargs.pop("reduction", None)
        logits, labels = jnp.asarray(case["logits"]), jnp.asarray(case["labels"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels, **kwargs)
        return {"loss": np.asarray(loss.mean() if reduction == "mean" else loss)}  # the mean is ours to take
    raise KeyError(component)


def sample_init(component: str, seed: int) -> dict[str, np.ndarray]:
    """Parameters of a freshly built layer at the component's `init_dims`, neutral names/layout."""
    d, rngs = COMPONENTS[component].init_dims, nnx.Rngs(seed)
    if component == "dense":
        layer = nnx.Linear(d["in"], d["out"], rngs=rngs)
        return {"weight": np.asarray(layer.kernel.value).T, "bias": np.asarray(layer.bias.value)}
    if component == "conv2d":
        layer = nnx.Conv(d["cin"], d["cout"], (d["k"], d["k"]), rngs=rngs)
        return {
            "weight": conv_hwio_to_oihw(np.asarray(layer.kernel.value)),
            "bias": np.asarray(layer.bias.value),
        }
    if component == "lstm":
        cell = nnx.LSTMCell(d["in"], d["hidden"], rngs=rngs)

        def stack(names: list[str], part: str) -> np.ndarray:
            return np.concatenate([np.asarray(getattr(getattr(cell, n), part).value) for n in names], axis=-1)

        inputs, hidden = [i for i, _ in LSTM_GATES], [h for _, h in LSTM_GATES]
        return {
            "weight_ih": stack(inputs, "kernel").T,
            "weight_hh": stack(hidden, "kernel").T,
            "bias_hh": stack(hidden, "bias"),
        }
    if component == "gru":
        cell = nnx.GRUCell(d["in"], d["hidden"], rngs=rngs)
        return {
            "weight_ih": np.asarray(cell.dense_i.kernel.value).T,
            "bias_ih": np.asarray(cell.dense_i.bias.value),
            "weight_hh": np.asarray(cell.dense_h.kernel.value).T,
        }
    if component == "batchnorm":
        layer = nnx.BatchNorm(d["features"], rngs=rngs)
        return {"weight": np.asarray(layer.scale.value), "bias": np.asarray(layer.bias.value)}
    if component == "embedding":
        return {"weight": np.asarray(nnx.Embed(d["vocab"], d["dim"], rngs=rngs).embedding.value)}
    return {}
