"""BUGGY port (on purpose): keras_model.py with the stride-2 convolution padded "same".

Keras "same" with stride 2 pads (0, 1), the extra pixel bottom/right only; PyTorch's `padding=1`
pads (1, 1). Every output pixel of conv1 reads a window shifted by one: `spotdiff port` finds it at
conv1 (cause: stride-2 SAME padding).
"""

from __future__ import annotations

import keras
from keras import layers


def build(channels: int = 8, num_classes: int = 10) -> keras.Model:
    inputs = keras.Input((16, 16, 3))  # (B, 16, 16, 3)
    x = layers.Conv2D(channels, 3, strides=2, padding="same", use_bias=False, name="conv1")(inputs)  # BUG
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)  # (B, 8, 8, 8)
    x = layers.Conv2D(channels, 3, padding="same", use_bias=False, name="conv2")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn2")(x)
    shortcut = layers.Conv2D(channels, 1, strides=2, use_bias=False, name="shortcut")(inputs)
    x = layers.ReLU(name="relu2")(layers.Add(name="add")([x, shortcut]))  # (B, 8, 8, 8)
    x = layers.GlobalAveragePooling2D(name="pool")(x)  # (B, 8)
    outputs = layers.Dense(num_classes, name="head")(x)  # (B, 10)
    return keras.Model(inputs, outputs, name="resnet_block")
