"""The pre-LayerNorm transformer block ported faithfully to Keras 3 (any backend).

Input (B, T, 32) float32. Two defaults differ from PyTorch and are set here: LayerNormalization's
epsilon (Keras 1e-3, torch 1e-5); GELU is exact in both (keras.activations.gelu approximate=False).
MultiHeadAttention keeps q, k, v as separate (d, heads, head_dim) kernels; key_dim is head_dim.
"""

from __future__ import annotations

import keras
from keras import layers


def build(d_model: int = 32, heads: int = 4, mlp_ratio: int = 4) -> keras.Model:
    inputs = keras.Input((None, d_model))  # (B, T, 32)
    h = layers.LayerNormalization(epsilon=1e-5, name="ln1")(inputs)
    h = layers.MultiHeadAttention(heads, d_model // heads, name="attn")(h, h)  # self-attention
    x = layers.Add(name="add1")([inputs, h])  # (B, T, 32)
    h = layers.LayerNormalization(epsilon=1e-5, name="ln2")(x)
    h = layers.Dense(mlp_ratio * d_model, name="fc1")(h)  # (B, T, 128)
    h = layers.Activation("gelu", name="gelu")(h)  # keras.activations.gelu: approximate=False
    h = layers.Dense(d_model, name="fc2")(h)  # (B, T, 32)
    outputs = layers.Add(name="add2")([x, h])
    return keras.Model(inputs, outputs, name="transformer_block")
