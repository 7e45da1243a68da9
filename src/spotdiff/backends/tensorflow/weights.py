"""Neutral numpy weights <-> Keras layers (HWIO conv kernels, (in, out) dense kernels, NHWC
flatten). Names are `<layer name>.weight|bias`, the Keras layer names set by the task."""

from __future__ import annotations

import keras
import numpy as np

from spotdiff.backends.layouts import from_channels_last, to_channels_last


def load_neutral(model: keras.Model, neutral: dict[str, np.ndarray], flatten_layer: str | None = None,
                 flatten_chw: tuple[int, int, int] | None = None) -> None:
    native = to_channels_last(neutral, flatten_layer, flatten_chw)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([native[f"{layer.name}.weight"], native[f"{layer.name}.bias"]])


def to_neutral(named: dict[str, np.ndarray], flatten_layer: str | None = None,
               flatten_chw: tuple[int, int, int] | None = None) -> dict[str, np.ndarray]:
    """Keras-layout arrays by neutral name (`<layer>.weight|bias`) -> neutral layout."""
    return from_channels_last({k: np.asarray(v) for k, v in named.items()}, flatten_layer, flatten_chw)


def named_variables(model: keras.Model, values=None) -> dict[str, object]:
    """`<layer>.weight|bias` -> the model's variables (or the matching entries of `values`)."""
    out = {}
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    for layer in model.layers:
        if layer.weights:
            kernel, bias = layer.kernel, layer.bias
            pick = (lambda v: values[index[id(v)]]) if values is not None else (lambda v: v)
            out[f"{layer.name}.weight"], out[f"{layer.name}.bias"] = pick(kernel), pick(bias)
    return out


def load_lstm_neutral(
    embedding: keras.layers.Layer,
    lstm: keras.layers.Layer,
    dense: keras.layers.Layer,
    neutral: dict[str, np.ndarray],
    names: tuple[str, str, str] = ("embedding", "lstm", "fc"),
) -> None:
    """Neutral (PyTorch) embedding -> LSTM -> linear weights into built Keras layers: the same gate
    order, transposed kernels, the two LSTM biases summed into Keras' one."""
    from spotdiff.backends.layouts import lstm_torch_to_keras

    e, r, d = names
    embedding.set_weights([neutral[f"{e}.weight"]])
    lstm.set_weights(
        list(
            lstm_torch_to_keras(
                *(neutral[f"{r}.{k}_l0"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            )
        )
    )
    dense.set_weights([neutral[f"{d}.weight"].T.copy(), neutral[f"{d}.bias"]])
