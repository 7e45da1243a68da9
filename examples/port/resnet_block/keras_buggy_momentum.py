"""BUGGY port (on purpose): keras_model.py with BatchNorm momentum copied as-is from PyTorch (0.1).

PyTorch's momentum 0.1 weighs the NEW batch statistic, Keras's the OLD running value: momentum=0.1
in Keras keeps 10 % of the running mean where torch keeps 90 %. Outputs and gradients agree (training
normalises with the batch statistics); the running statistics differ after the first step: `spotdiff
port` finds it at bn1 (cause: BatchNorm momentum convention).
"""

from __future__ import annotations

import keras
from keras import layers


def build(channels: int = 8, num_classes: int = 10) -> keras.Model:
    inputs = keras.Input((16, 16, 3))  # (B, 16, 16, 3)
    x = layers.ZeroPadding2D(1, name="pad1")(inputs)  # (B, 18, 18, 3), as torch's padding=1
    x = layers.Conv2D(channels, 3, strides=2, padding="valid", use_bias=False, name="conv1")(x)
    x = layers.BatchNormalization(momentum=0.1, epsilon=1e-5, name="bn1")(x)  # BUG
    x = layers.ReLU(name="relu1")(x)  # (B, 8, 8, 8)
    x = layers.Conv2D(channels, 3, padding="same", use_bias=False, name="conv2")(x)
    x = layers.BatchNormalization(momentum=0.1, epsilon=1e-5, name="bn2")(x)  # BUG
    shortcut = layers.Conv2D(channels, 1, strides=2, use_bias=False, name="shortcut")(inputs)
    x = layers.ReLU(name="relu2")(layers.Add(name="add")([x, shortcut]))  # (B, 8, 8, 8)
    x = layers.GlobalAveragePooling2D(name="pool")(x)  # (B, 8)
    outputs = layers.Dense(num_classes, name="head")(x)  # (B, 10)
    return keras.Model(inputs, outputs, name="resnet_block")
