"""A pre-LayerNorm transformer block in PyTorch: the source model of the port examples.

Input (B, T, 32) float32. nn.MultiheadAttention keeps q, k and v in one fused (3d, d) projection
(`in_proj_weight`); the weight transfer splits it into the separate q/k/v projections of Keras and
Flax. LayerNorm's epsilon is 1e-5 and nn.GELU is the exact (erf) GELU.
"""

from __future__ import annotations

import torch
from torch import nn


class TransformerBlock(nn.Module):
    """x + attention(LN(x)), then x + MLP(LN(x)) with a 4x GELU MLP."""

    def __init__(self, d_model: int = 32, heads: int = 4, mlp_ratio: int = 4):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)  # eps 1e-5
        self.attn = nn.MultiheadAttention(d_model, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, mlp_ratio * d_model)
        self.gelu = nn.GELU()  # exact: approximate="none"
        self.fc2 = nn.Linear(mlp_ratio * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, T, 32)
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]  # (B, T, 32)
        return x + self.fc2(self.gelu(self.fc1(self.ln2(x))))  # (B, T, 128) -> (B, T, 32)


def build() -> TransformerBlock:
    return TransformerBlock()
