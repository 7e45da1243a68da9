"""The GRU text classifier ported faithfully to Flax NNX.

Input (B, T) int token ids below 50. Flax's nnx.GRUCell orders the gates r, z, n as PyTorch does and
applies the reset gate after the recurrent matmul, but its recurrent layer `dense_h` has NO bias
(flax 0.12: `use_bias=False`, although its docstring writes b_hn): it computes
n = tanh(W_in x + b_in + r * (W_hn h)). b_hr and b_hz could be folded into the input bias, b_hn
cannot (it sits inside r * (...)), and the cell has 3h parameters fewer than torch.nn.GRU. The
faithful port therefore gives the recurrent layer its bias back (`GRUCellWithRecurrentBias`);
flax_stock_grucell.py is the port with the stock cell.
"""

from __future__ import annotations

import jax
from flax import nnx


class GRUCellWithRecurrentBias(nnx.GRUCell):
    """nnx.GRUCell whose recurrent layer has a bias, as torch.nn.GRU's (b_hr, b_hz, b_hn)."""

    def __init__(self, in_features: int, hidden_features: int, *, rngs: nnx.Rngs):
        super().__init__(in_features, hidden_features, rngs=rngs)
        self.dense_h = nnx.Linear(hidden_features, 3 * hidden_features, use_bias=True,
                                  kernel_init=nnx.initializers.orthogonal(), rngs=rngs)  # r, z, n


class GRUClassifier(nnx.Module):
    """Embedding, one GRU layer, a dense layer on the last hidden state."""

    def __init__(self, vocab_size: int = 50, embed_dim: int = 16, hidden: int = 16, num_classes: int = 4,
                 *, rngs: nnx.Rngs):
        self.embedding = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
        self.gru = nnx.RNN(GRUCellWithRecurrentBias(embed_dim, hidden, rngs=rngs))
        self.head = nnx.Linear(hidden, num_classes, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:  # tokens (B, T)
        x = self.embedding(tokens)  # (B, T, 16)
        states = self.gru(x)  # (B, T, 16): the hidden state after every step
        return self.head(states[:, -1])  # (B, 4)


def build() -> GRUClassifier:
    return GRUClassifier(rngs=nnx.Rngs(0))
