"""TensorFlow / Keras side of the defaults audit. torch_probe.py and jax_probe.py have the same
functions, in the same order: `versions`, `declared`, `run_optimizer`, `run_layer`, `sample_init`.

Keras keeps channels-last layouts: dense kernels (in, out), conv kernels HWIO with NHWC inputs,
RNN kernels (in, G*h) with one bias (LSTM) or a (2, 3h) bias pair (GRU, reset_after=True) and the
GRU gates in z, r, h order. Conversions to and from the neutral layout happen here.
"""

from __future__ import annotations

import inspect
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from spotdiff.backends.layouts import conv_hwio_to_oihw, conv_oihw_to_hwio, dense_to_in_out
from spotdiff.hparams import REQUIRED
from spotdiff.probes.defaults.components import COMPONENTS

OPTIMIZERS = {
    "sgd": keras.optimizers.SGD, "sgd-nesterov": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop,
    "adam": keras.optimizers.Adam, "adam-wd": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
    "adagrad": keras.optimizers.Adagrad,
}
LAYERS = {
    "dense": (keras.layers.Dense, (1,)), "conv2d": (keras.layers.Conv2D, (1, 3)),
    "lstm": (keras.layers.LSTM, (1,)), "gru": (keras.layers.GRU, (1,)),
    "batchnorm": (keras.layers.BatchNormalization, ()), "dropout": (keras.layers.Dropout, (0.5,)),
    "embedding": (keras.layers.Embedding, (2, 1)),
    "cross-entropy": (keras.losses.SparseCategoricalCrossentropy, ()),
}


def versions() -> dict[str, str]:
    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def _plain(value: Any) -> Any:
    """get_config values as text/numbers: initialiser configs become `Name(arg=value)`."""
    if isinstance(value, dict) and "class_name" in value:
        args = ", ".join(f"{k}={v!r}" for k, v in (value.get("config") or {}).items() if v is not None)
        return f"{value['class_name']}({args})"
    if isinstance(value, float):
        return float(f"{value:.7g}")  # Keras stores float32: 0.009999999776 -> 0.01
    return value


def declared(component: str) -> dict[str, Any]:
    """Argument -> default: the signature says which are required, `get_config()` of an instance
    gives the effective values (initialisers included)."""
    if component in OPTIMIZERS:
        cls, required_args = OPTIMIZERS[component], ()
    else:
        cls, required_args = LAYERS[component]
    found: dict[str, Any] = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            found[p.name] = REQUIRED if p.default is p.empty else p.default
    for key, value in cls(*required_args).get_config().items():
        if found.get(key) != REQUIRED and key not in ("name", "dtype", "trainable"):
            found[key] = _plain(value)
    return found


def run_optimizer(
    component: str, kwargs: dict[str, Any], case: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Feed the gradient stream to the optimiser; theta after every step, (K, P)."""
    theta = tf.Variable(case["theta0"])
    optimizer = OPTIMIZERS[component](**kwargs)
    out = np.empty_like(case["grads"])
    for step, grad in enumerate(case["grads"]):
        optimizer.apply_gradients([(tf.constant(grad), theta)])
        out[step] = theta.numpy()
    return {"theta": out}


def _zrn(array: np.ndarray, axis: int = -1) -> np.ndarray:
    """Swap the first two gate blocks: neutral r, z, n <-> Keras z, r, h (its own inverse)."""
    first, second, third = np.split(array, 3, axis=axis)
    return np.concatenate([second, first, third], axis=axis)


def _rnn(component: str, kwargs: dict[str, Any], case: dict[str, np.ndarray]) -> np.ndarray:
    d = COMPONENTS[component].dims
    layer = LAYERS[component][0](d["hidden"], return_sequences=True, **kwargs)
    layer(case["x"])  # builds the weights: (B, T, F), batch-major like the neutral layout
    w_ih, w_hh, b_ih, b_hh = (case[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    if component == "lstm":  # same gate order; Keras has one bias
        layer.set_weights([w_ih.T, w_hh.T, b_ih + b_hh])
    elif layer.reset_after:
        layer.set_weights([_zrn(w_ih.T), _zrn(w_hh.T), np.stack([_zrn(b_ih), _zrn(b_hh)])])
    else:
        layer.set_weights([_zrn(w_ih.T), _zrn(w_hh.T), _zrn(b_ih + b_hh)])
    return layer(case["x"]).numpy()


def run_layer(
    component: str, kwargs: dict[str, Any], case: dict[str, np.ndarray], seed: int
) -> dict[str, np.ndarray]:
    """One forward computation with the neutral weights loaded; outputs in the neutral layout."""
    keras.utils.set_random_seed(seed)
    d = COMPONENTS[component].dims
    if component == "dense":
        layer = keras.layers.Dense(d["out"], **kwargs)
        layer.build((None, d["in"]))
        layer.set_weights([dense_to_in_out(case["weight"]), case["bias"]])
        return {"y": layer(case["x"]).numpy()}
    if component == "conv2d":
        layer = keras.layers.Conv2D(d["cout"], d["k"], **kwargs)
        layer.build((None, d["hw"], d["hw"], d["cin"]))
        layer.set_weights([conv_oihw_to_hwio(case["weight"]), case["bias"]])
        y = layer(case["x"].transpose(0, 2, 3, 1)).numpy()  # NCHW -> NHWC -> NHWC
        return {"y": y.transpose(0, 3, 1, 2)}
    if component in ("lstm", "gru"):
        return {"y": _rnn(component, kwargs, case)}
    if component == "batchnorm":
        layer = keras.layers.BatchNormalization(**kwargs)
        layer.build((None, d["features"]))
        f = d["features"]
        layer.set_weights([case["weight"], case["bias"], np.zeros(f, np.float32), np.ones(f, np.float32)])
        for batch in case["batches"]:
            train_last = layer(batch, training=True)
        return {
            "running_mean": layer.moving_mean.numpy(),
            "running_var": layer.moving_variance.numpy(),
            "eval": layer(case["test"], training=False).numpy(),
            "train_last": train_last.numpy(),
        }
    if component == "dropout":
        return {"y": keras.layers.Dropout(seed=seed, **kwargs)(case["x"], training=True).numpy()}
    if component == "embedding":
        layer = keras.layers.Embedding(d["vocab"], d["dim"])
        layer.build((None,))
        layer.set_weights([case["weight"]])
        return {"y": layer(case["ids"]).numpy()}
    if component == "cross-entropy":
        loss = keras.losses.SparseCategoricalCrossentropy(**kwargs)
        return {"loss": np.asarray(loss(case["labels"], case["logits"]))}
    raise KeyError(component)


def sample_init(component: str, seed: int) -> dict[str, np.ndarray]:
    """Parameters of a freshly built layer at the component's `init_dims`, neutral names/layout."""
    keras.utils.set_random_seed(seed)
    d = COMPONENTS[component].init_dims
    if component == "dense":
        layer = keras.layers.Dense(d["out"])
        layer.build((None, d["in"]))
        kernel, bias = layer.get_weights()
        return {"weight": kernel.T, "bias": bias}
    if component == "conv2d":
        layer = keras.layers.Conv2D(d["cout"], d["k"])
        layer.build((None, 16, 16, d["cin"]))
        kernel, bias = layer.get_weights()
        return {"weight": conv_hwio_to_oihw(kernel), "bias": bias}
    if component in ("lstm", "gru"):
        layer = LAYERS[component][0](d["hidden"])
        layer(np.zeros((1, 2, d["in"]), np.float32))
        kernel, recurrent, bias = layer.get_weights()
        if component == "lstm":  # one bias: reported as the input-side one
            return {"weight_ih": kernel.T, "weight_hh": recurrent.T, "bias_ih": bias}
        return {
            "weight_ih": _zrn(kernel).T,
            "weight_hh": _zrn(recurrent).T,
            "bias_ih": _zrn(bias[0]),
            "bias_hh": _zrn(bias[1]),
        }
    if component == "batchnorm":
        layer = keras.layers.BatchNormalization()
        layer.build((None, d["features"]))
        gamma, beta, _, _ = layer.get_weights()
        return {"weight": gamma, "bias": beta}
    if component == "embedding":
        layer = keras.layers.Embedding(d["vocab"], d["dim"])
        layer.build((None,))
        return {"weight": layer.get_weights()[0]}
    return {}
