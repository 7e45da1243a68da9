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
