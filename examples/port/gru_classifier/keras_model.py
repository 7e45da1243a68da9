"""The GRU text classifier ported faithfully to Keras 3 (any backend).

Input (B, T) int token ids below 50. `reset_after=True` (Keras 3's default, written out) is PyTorch's
GRU: the reset gate multiplies the recurrent term after its matmul, and there are two biases per gate
(Keras stores them as one (2, 3h) bias: input side, recurrent side). Keras orders the gates z, r, h
where PyTorch has r, z, n; the weight transfer reorders them. Keras's GRU returns the last hidden state.
"""

from __future__ import annotations

import keras
from keras import layers


def build(vocab_size: int = 50, embed_dim: int = 16, hidden: int = 16, num_classes: int = 4) -> keras.Model:
    tokens = keras.Input((None,), dtype="int64")  # (B, T)
    x = layers.Embedding(vocab_size, embed_dim, name="embedding")(tokens)  # (B, T, 16)
    x = layers.GRU(hidden, reset_after=True, name="gru")(x)  # (B, 16): the last hidden state
    outputs = layers.Dense(num_classes, name="head")(x)  # (B, 4)
    return keras.Model(tokens, outputs, name="gru_classifier")
