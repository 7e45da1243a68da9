"""The ResNet-style block net ported faithfully to Keras 3 (channels-last, any backend).

Input (B, 16, 16, 3) NHWC. Two details make it the same function as torch_model.py:
- the stride-2 convolution: PyTorch's `padding=1` pads one pixel on every side, Keras "same" with
  stride 2 pads (0, 1) (the extra pixel bottom/right only), so the port pads explicitly with
  ZeroPadding2D(1) and convolves with "valid";
- BatchNormalization: Keras's momentum weighs the OLD running value (torch's 0.1 is Keras's 0.9)
  and its epsilon defaults to 1e-3 (torch 1e-5).
"""

from __future__ import annotations

import keras
from keras import layers


def build(channels: int = 8, num_classes: int = 10) -> keras.Model:
    inputs = keras.Input((16, 16, 3))  # (B, 16, 16, 3)
    x = layers.ZeroPadding2D(1, name="pad1")(inputs)  # (B, 18, 18, 3), as torch's padding=1
    x = layers.Conv2D(channels, 3, strides=2, padding="valid", use_bias=False, name="conv1")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)  # (B, 8, 8, 8)
    x = layers.Conv2D(channels, 3, padding="same", use_bias=False, name="conv2")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn2")(x)
    shortcut = layers.Conv2D(channels, 1, strides=2, use_bias=False, name="shortcut")(inputs)
    x = layers.ReLU(name="relu2")(layers.Add(name="add")([x, shortcut]))  # (B, 8, 8, 8)
    x = layers.GlobalAveragePooling2D(name="pool")(x)  # (B, 8)
    outputs = layers.Dense(num_classes, name="head")(x)  # (B, 10)
    return keras.Model(inputs, outputs, name="resnet_block")
