"""Neutral numpy weights <-> Keras 3 layers on any backend (HWIO conv kernels, (in, out) dense
kernels, NHWC flatten). Names are `<layer name>.weight|bias`, the Keras layer names set by the task."""

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


def to_neutral(named: dict[str, object], flatten_layer: str | None = None,
               flatten_chw: tuple[int, int, int] | None = None) -> dict[str, np.ndarray]:
    """Keras-layout values (variables or backend tensors) by neutral name -> neutral numpy layout."""
    arrays = {k: np.asarray(keras.ops.convert_to_numpy(v)) for k, v in named.items()}
    return from_channels_last(arrays, flatten_layer, flatten_chw)


def named_variables(model: keras.Model, values=None) -> dict[str, object]:
    """`<layer>.weight|bias` -> the model's variables (or the matching entries of `values`, one per
    trainable variable, e.g. gradients)."""
    out = {}
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    for layer in model.layers:
        if layer.weights:
            kernel, bias = layer.kernel, layer.bias
            pick = (lambda v: values[index[id(v)]]) if values is not None else (lambda v: v)
            out[f"{layer.name}.weight"], out[f"{layer.name}.bias"] = pick(kernel), pick(bias)
    return out
