"""The GRU text classifier ported to Flax NNX with the stock nnx.GRUCell: NOT a faithful port.

nnx.GRUCell's recurrent layer has no bias (see flax_model.py): the model has 3 x 16 = 48 parameters
fewer than torch_model.py and no place for torch's b_hn, so `spotdiff port` refuses the weight
transfer (parameter counts differ) instead of comparing two different functions.
"""

from __future__ import annotations

import jax
from flax import nnx


class GRUClassifier(nnx.Module):
    """Embedding, one GRU layer, a dense layer on the last hidden state."""

    def __init__(self, vocab_size: int = 50, embed_dim: int = 16, hidden: int = 16, num_classes: int = 4,
                 *, rngs: nnx.Rngs):
        self.embedding = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
        self.gru = nnx.RNN(nnx.GRUCell(embed_dim, hidden, rngs=rngs))  # no recurrent bias
        self.head = nnx.Linear(hidden, num_classes, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:  # tokens (B, T)
        x = self.embedding(tokens)  # (B, T, 16)
        states = self.gru(x)  # (B, T, 16): the hidden state after every step
        return self.head(states[:, -1])  # (B, 4)


def build() -> GRUClassifier:
    return GRUClassifier(rngs=nnx.Rngs(0))
