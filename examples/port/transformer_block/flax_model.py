"""The pre-LayerNorm transformer block ported faithfully to Flax NNX.

Input (B, T, 32) float32. Two defaults differ from PyTorch and are set here: nnx.LayerNorm's
epsilon (Flax 1e-6, torch 1e-5) and nnx.gelu's approximation (jax.nn.gelu defaults to the tanh
approximation, torch's nn.GELU is exact: approximate=False). nnx.MultiHeadAttention keeps q, k, v
as separate (d, heads, head_dim) kernels.
"""

from __future__ import annotations

import jax
from flax import nnx


class TransformerBlock(nnx.Module):
    """x + attention(LN(x)), then x + MLP(LN(x)) with a 4x GELU MLP."""

    def __init__(self, d_model: int = 32, heads: int = 4, mlp_ratio: int = 4, *, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(d_model, epsilon=1e-5, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, d_model, decode=False, rngs=rngs)
        self.ln2 = nnx.LayerNorm(d_model, epsilon=1e-5, rngs=rngs)
        self.fc1 = nnx.Linear(d_model, mlp_ratio * d_model, rngs=rngs)
        self.fc2 = nnx.Linear(mlp_ratio * d_model, d_model, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:  # x (B, T, 32)
        x = x + self.attn(self.ln1(x))  # self-attention, (B, T, 32)
        h = nnx.gelu(self.fc1(self.ln2(x)), approximate=False)  # (B, T, 128), exact as torch
        return x + self.fc2(h)  # (B, T, 32)


def build() -> TransformerBlock:
    return TransformerBlock(rngs=nnx.Rngs(0))
