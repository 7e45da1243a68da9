"""A plain Flax NNX GPT in the style of Flax's miniGPT tutorial: nnx.MultiHeadAttention with a causal
mask, nnx.Optimizer over optax.adamw after global-norm clipping, an @nnx.jit train step."""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from gpt_common import add_arguments, get_batch, load, report


class TransformerBlock(nnx.Module):
    def __init__(self, embed_dim: int, num_heads: int, *, rngs: nnx.Rngs):
        self.layer_norm1 = nnx.LayerNorm(embed_dim, epsilon=1e-5, rngs=rngs)
        self.mha = nnx.MultiHeadAttention(num_heads=num_heads, in_features=embed_dim, decode=False, rngs=rngs)
        self.layer_norm2 = nnx.LayerNorm(embed_dim, epsilon=1e-5, rngs=rngs)
        self.linear1 = nnx.Linear(embed_dim, 4 * embed_dim, rngs=rngs)
        self.linear2 = nnx.Linear(4 * embed_dim, embed_dim, rngs=rngs)

    def __call__(self, x):
        mask = nnx.make_causal_mask(jnp.ones(x.shape[:2]))
        x = x + self.mha(self.layer_norm1(x), mask=mask)
        return x + self.linear2(nnx.gelu(self.linear1(self.layer_norm2(x)), approximate=False))


class MiniGPT(nnx.Module):
    def __init__(self, block_size, vocab_size, embed_dim, num_heads, num_blocks, *, rngs: nnx.Rngs):
        self.token_emb = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
        self.pos_emb = nnx.Embed(block_size, embed_dim, rngs=rngs)
        self.blocks = nnx.List([TransformerBlock(embed_dim, num_heads, rngs=rngs) for _ in range(num_blocks)])
        self.layer_norm = nnx.LayerNorm(embed_dim, epsilon=1e-5, rngs=rngs)

    def __call__(self, idx):
        x = self.token_emb(idx) + self.pos_emb(jnp.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.token_emb.attend(self.layer_norm(x))


def loss_fn(model, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss


def main():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args()
    train_data, _ = load()
    model = MiniGPT(args.block_size, 256, args.n_embd, args.n_head, args.n_layer, rngs=nnx.Rngs(0))
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
    tx = optax.chain(optax.clip_by_global_norm(1.0),
                     optax.adamw(args.lr, b1=0.9, b2=0.95, weight_decay=0.1, mask=decay_mask))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    rng = np.random.default_rng(0)
    step_s = []
    for _ in range(args.steps):
        x, y = get_batch(rng, train_data, args.batch_size, args.block_size)
        start = time.perf_counter()
        loss = train_step(model, optimizer, jnp.asarray(x), jnp.asarray(y))
        loss.block_until_ready()
        step_s.append(time.perf_counter() - start)
    report(step_s, args.batch_size * args.block_size, float(loss))


if __name__ == "__main__":
    main()
