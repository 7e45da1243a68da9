"""BUGGY port (on purpose): flax_model.py with nnx.gelu at its default, the tanh approximation.

jax.nn.gelu (re-exported as nnx.gelu) defaults to approximate=True, 0.5 x (1 + tanh(sqrt(2/pi)
(x + 0.044715 x^3))); torch's nn.GELU is exact, x Phi(x). They differ by up to ~5e-4 per value:
`spotdiff port` finds it after fc1 (cause: GELU approximation).
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
        h = nnx.gelu(self.fc1(self.ln2(x)))  # BUG: tanh approximation; (B, T, 128)
        return x + self.fc2(h)  # (B, T, 32)


def build() -> TransformerBlock:
    return TransformerBlock(rngs=nnx.Rngs(0))
