"""The digit CNNs as Keras writes them, once for every Keras that runs them: TensorFlow's own Keras
(tf_impl) and Keras 3 on any backend (keras_impl). Imports Keras only, never a backend.

`build_model` is keras.Sequential as in Keras' MNIST convnet example; `layer_outputs` calls it
one layer at a time for `spotdiff where`; `neutral_activation` puts a recorded output in the
neutral layout (NCHW, flatten in C,H,W order).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from spotdiff.backends.keras import weights
from spotdiff.tasks.digits.models import FLATTEN_CHW
from spotdiff.tasks.shared import neutral_weights


def build_model(params, data, init: str, dropout: bool = True) -> keras.Model:
    """The post's CNN `params.model`, from the shared weights when `init` is "shared" (else from
    Keras' own initialisers, drawn from the global seed); `dropout=False` sets every rate to 0."""
    layers = keras.layers
    if params.model == "pytorch-examples":
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            layers.Conv2D(10, 5, name="conv1"),
            layers.MaxPooling2D(2), layers.ReLU(),
            layers.Conv2D(20, 5, name="conv2"),
            layers.SpatialDropout2D(0.5 if dropout else 0.0),
            layers.MaxPooling2D(2), layers.ReLU(),
            layers.Flatten(),  # (B, 4*4*20) in (H, W, C) order
            layers.Dense(50, activation="relu", name="fc1"),
            layers.Dropout(0.5 if dropout else 0.0),
            layers.Dense(10, name="fc2"),
        ])
    else:
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 5, padding="same", activation="relu", name="conv1"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(2),
            layers.Flatten(),  # (B, 7*7*64)
            layers.Dense(1024, activation="relu", name="fc1"),
            layers.Dropout(0.4 if dropout else 0.0),
            layers.Dense(10, name="fc2"),
        ])
    if init == "shared":
        weights.load_neutral(model, neutral_weights(data), "fc1", FLATTEN_CHW[params.model])
    return model


def layer_outputs(model: keras.Model, x: Any) -> list[Any]:
    """Every output `spotdiff where` records (models.WHERE_LAYERS order), the last one the logits:
    `model` called one layer at a time, dropout skipped (it is off), and a fused activation
    (Dense(activation="relu")) recorded as its own layer. x: (B, 28, 28, 1)."""
    outputs = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Dropout, keras.layers.SpatialDropout2D)):
            continue
        activation = getattr(layer, "activation", None)
        if activation is not None and activation is not keras.activations.linear:
            layer.activation = keras.activations.linear
            try:
                x = layer(x)
            finally:
                layer.activation = activation
            outputs.append(x)
            x = activation(x)
        else:
            x = layer(x)
        outputs.append(x)
    return outputs


def neutral_activation(name: str, value: np.ndarray, architecture: str) -> np.ndarray:
    """One recorded output in the neutral layout: NHWC -> NCHW, the flatten's (H, W, C) order ->
    (C, H, W)."""
    if value.ndim == 4:
        return value.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if name == "flatten":
        value = value.reshape(len(value), *FLATTEN_CHW[architecture][1:], -1).transpose(0, 3, 1, 2)
        return value.reshape(len(value), -1)  # (B, C*H*W)
    return value
