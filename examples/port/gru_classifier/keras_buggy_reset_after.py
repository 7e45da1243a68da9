"""BUGGY port (on purpose): keras_model.py with the GRU built reset_after=False (the Keras 2 / TF1 form).

reset_after=False applies the reset gate BEFORE the recurrent matmul, n = tanh(W_in x + b_in +
W_hn (r * h)), with one bias per gate; PyTorch applies it after, n = tanh(W_in x + b_in + r * (W_hn h
+ b_hn)). It also has 3h fewer parameters (no recurrent bias), so the weights cannot transfer exactly.
"""

from __future__ import annotations

import keras
from keras import layers


def build(vocab_size: int = 50, embed_dim: int = 16, hidden: int = 16, num_classes: int = 4) -> keras.Model:
    tokens = keras.Input((None,), dtype="int64")  # (B, T)
    x = layers.Embedding(vocab_size, embed_dim, name="embedding")(tokens)  # (B, T, 16)
    x = layers.GRU(hidden, reset_after=False, name="gru")(x)  # BUG; (B, 16): the last hidden state
    outputs = layers.Dense(num_classes, name="head")(x)  # (B, 4)
    return keras.Model(tokens, outputs, name="gru_classifier")
