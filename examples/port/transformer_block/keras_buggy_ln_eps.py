"""BUGGY port (on purpose): keras_model.py with LayerNormalization at its default epsilon (1e-3).

PyTorch's LayerNorm adds 1e-5 to the variance, Keras's 1e-3 by default: every normalised value is
scaled by sqrt((var + 1e-5) / (var + 1e-3)). `spotdiff port` finds it at ln1 (cause: LayerNorm epsilon).
"""

from __future__ import annotations

import keras
from keras import layers


def build(d_model: int = 32, heads: int = 4, mlp_ratio: int = 4) -> keras.Model:
    inputs = keras.Input((None, d_model))  # (B, T, 32)
    h = layers.LayerNormalization(name="ln1")(inputs)  # BUG: epsilon 1e-3
    h = layers.MultiHeadAttention(heads, d_model // heads, name="attn")(h, h)  # self-attention
    x = layers.Add(name="add1")([inputs, h])  # (B, T, 32)
    h = layers.LayerNormalization(name="ln2")(x)  # BUG: epsilon 1e-3
    h = layers.Dense(mlp_ratio * d_model, name="fc1")(h)  # (B, T, 128)
    h = layers.Activation("gelu", name="gelu")(h)  # keras.activations.gelu: approximate=False
    h = layers.Dense(d_model, name="fc2")(h)  # (B, T, 32)
    outputs = layers.Add(name="add2")([x, h])
    return keras.Model(inputs, outputs, name="transformer_block")
