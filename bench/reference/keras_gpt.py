"""A plain Keras GPT in the style of the Keras example "Text generation with a miniature GPT" (its head
is a Dense layer, untied, as there):
layers.MultiHeadAttention(use_causal_mask=True) in a TransformerBlock, a functional model compiled
with AdamW (global_clipnorm 1.0) and trained batch by batch with train_on_batch; `--xla` sets
jit_compile=True."""

import argparse
import time

import keras
import numpy as np
from gpt_common import add_arguments, get_batch, load, report
from keras import layers, ops


class TransformerBlock(layers.Layer):
    def __init__(self, embed_dim, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.att = layers.MultiHeadAttention(num_heads, embed_dim // num_heads)
        self.ffn = keras.Sequential([layers.Dense(4 * embed_dim, activation="gelu"), layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-5)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-5)

    def call(self, inputs):
        x = inputs + self.att(self.layernorm1(inputs), self.layernorm1(inputs), use_causal_mask=True)
        return x + self.ffn(self.layernorm2(x))


class TokenAndPositionEmbedding(layers.Layer):
    def __init__(self, maxlen, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.token_emb = layers.Embedding(vocab_size, embed_dim)
        self.pos_emb = layers.Embedding(maxlen, embed_dim)

    def call(self, x):
        return self.token_emb(x) + self.pos_emb(ops.arange(ops.shape(x)[-1]))


def build_model(args):
    inputs = layers.Input(shape=(args.block_size,), dtype="int32")
    x = TokenAndPositionEmbedding(args.block_size, 256, args.n_embd)(inputs)
    for _ in range(args.n_layer):
        x = TransformerBlock(args.n_embd, args.n_head)(x)
    outputs = layers.Dense(256)(layers.LayerNormalization(epsilon=1e-5)(x))
    return keras.Model(inputs=inputs, outputs=outputs)


def main():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--xla", action="store_true", help="jit_compile=True (default off)")
    args = parser.parse_args()
    keras.utils.set_random_seed(1337)
    train_data, _ = load()
    model = build_model(args)
    optimizer = keras.optimizers.AdamW(args.lr, weight_decay=0.1, beta_1=0.9, beta_2=0.95,
                                       global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if len(v.shape) < 2])
    model.compile(optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=args.xla)
    rng = np.random.default_rng(0)
    step_s = []
    for _ in range(args.steps):
        x, y = get_batch(rng, train_data, args.batch_size, args.block_size)
        start = time.perf_counter()
        loss = model.train_on_batch(x, y)
        step_s.append(time.perf_counter() - start)
    report(step_s, args.batch_size * args.block_size, float(loss))


if __name__ == "__main__":
    main()
