"""A GRU text classifier in PyTorch: the source model of the port examples.

Input (B, T) int64 token ids below 50. torch.nn.GRU computes, per step, with gates in r, z, n order:
    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))     h' = (1 - z) * n + z * h
The reset gate multiplies the recurrent term AFTER its matmul, bias included (Keras: reset_after=True).
"""

from __future__ import annotations

import torch
from torch import nn


class GRUClassifier(nn.Module):
    """Embedding, one GRU layer, a dense layer on the last hidden state."""

    def __init__(self, vocab_size: int = 50, embed_dim: int = 16, hidden: int = 16, num_classes: int = 4):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.gru = nn.GRU(embed_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # tokens (B, T)
        x = self.embedding(tokens)  # (B, T, 16)
        _, last = self.gru(x)  # last (1, B, 16): the hidden state after the last step
        return self.head(last[0])  # (B, 4)


def build() -> GRUClassifier:
    return GRUClassifier()
