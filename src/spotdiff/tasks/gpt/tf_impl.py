"""The GPT in TensorFlow, as Keras users write a custom transformer: keras.layers subclasses (one fused
qkv Dense and keras.ops.dot_product_attention(is_causal=True) instead of MultiHeadAttention, whose
separate q/k/v kernels are not GPT-2's layout), a keras.Model, Keras AdamW with global_clipnorm and
2-D-only decay, a tf.function training step over GradientTape; `xla` adds jit_compile=True.
bf16: the Keras mixed precision policy `mixed_bfloat16` (float32 variables, bfloat16 compute)."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from spotdiff.backends.tensorflow import env
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.gpt import loop
from spotdiff.tasks.gpt import spec as neutral


class CausalSelfAttention(layers.Layer):
    def __init__(self, n_embd: int, n_head: int, **kwargs):
        super().__init__(**kwargs)
        self.c_attn = layers.Dense(3 * n_embd)  # fused q, k, v
        self.c_proj = layers.Dense(n_embd)
        self.n_head = n_head

    def call(self, x):
        B, T, C = ops.shape(x)
        q, k, v = ops.split(self.c_attn(x), 3, axis=-1)  # (B, T, C) each
        q, k, v = (ops.reshape(t, (B, T, self.n_head, C // self.n_head)) for t in (q, k, v))  # (B, T, H, D)
        y = ops.dot_product_attention(q, k, v, is_causal=True)  # (B, T, H, D)
        return self.c_proj(ops.reshape(y, (B, T, C)))


class MLP(layers.Layer):
    def __init__(self, n_embd: int, gelu: str | None, **kwargs):
        super().__init__(**kwargs)
        self.c_fc = layers.Dense(4 * n_embd)
        self.c_proj = layers.Dense(n_embd)
        self.approximate = gelu == "tanh"  # native: keras.activations.gelu's default, the exact form

    def call(self, x):
        return self.c_proj(keras.activations.gelu(self.c_fc(x), approximate=self.approximate))


class Block(layers.Layer):
    def __init__(self, n_embd: int, n_head: int, ln_eps: float | None, gelu: str | None, **kwargs):
        super().__init__(**kwargs)
        eps = {} if ln_eps is None else {"epsilon": ln_eps}
        self.ln_1 = layers.LayerNormalization(**eps)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = layers.LayerNormalization(**eps)
        self.mlp = MLP(n_embd, gelu)

    def call(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(keras.Model):
    """Embeddings, blocks, final LayerNorm, head tied to the token embedding."""

    def __init__(self, params: neutral.GptParams, **kwargs):
        super().__init__(**kwargs)
        hp, e = params.layer_hparams(), params.n_embd
        self.wte = layers.Embedding(neutral.VOCAB_SIZE, e)
        self.wpe = layers.Embedding(params.block_size, e)
        self.h = [Block(e, params.n_head, hp["ln_eps"], hp["gelu"]) for _ in range(params.n_layer)]
        self.ln_f = layers.LayerNormalization(**({} if hp["ln_eps"] is None else {"epsilon": hp["ln_eps"]}))

    def call(self, idx):  # (B, T) -> (B, T, V) float32 logits
        x = self.wte(idx) + self.wpe(ops.arange(ops.shape(idx)[1]))  # (B, T, C)
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        logits = ops.matmul(x, ops.transpose(ops.cast(self.wte.embeddings, x.dtype)))
        return ops.cast(logits, "float32")


def named_variables(model: GPT) -> dict[str, tuple[tf.Variable, bool]]:
    """nanoGPT's name -> (Keras variable, whether its layout is the transpose of the neutral one)."""
    out = {"transformer.wte.weight": (model.wte.embeddings, False),
           "transformer.wpe.weight": (model.wpe.embeddings, False)}

    def norm(prefix, layer):
        out[prefix + ".weight"], out[prefix + ".bias"] = (layer.gamma, False), (layer.beta, False)

    def dense(prefix, layer):
        out[prefix + ".weight"], out[prefix + ".bias"] = (layer.kernel, True), (layer.bias, False)

    for i, block in enumerate(model.h):
        h = f"transformer.h.{i}."
        norm(h + "ln_1", block.ln_1)
        dense(h + "attn.c_attn", block.attn.c_attn)
        dense(h + "attn.c_proj", block.attn.c_proj)
        norm(h + "ln_2", block.ln_2)
        dense(h + "mlp.c_fc", block.mlp.c_fc)
        dense(h + "mlp.c_proj", block.mlp.c_proj)
    norm("transformer.ln_f", model.ln_f)
    return out


def build_model(params, data, precision: str) -> GPT:
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    model = GPT(params)
    model(np.zeros((1, params.block_size), np.int32))  # creates the variables
    shared = neutral.neutral_weights(data)
    for name, (variable, transposed) in named_variables(model).items():
        variable.assign(shared[name].T if transposed else shared[name])
    return model


loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def loss_fn(logits, targets):
    return loss_object(targets, logits)


def make_optimizer(model: GPT, params) -> keras.optimizers.Optimizer:
    """Keras AdamW clipping the global norm, weight decay excluded from all but 2-D variables."""
    kwargs = native_kwargs("tensorflow", "adamw", params.optimizer_hparams())
    optimizer = keras.optimizers.AdamW(global_clipnorm=params.grad_clip, **kwargs)
    optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if len(v.shape) != 2])
    return optimizer


def make_train_step(model: GPT, optimizer, params, mode: str, precision: str):
    @tf.function(jit_compile=mode == "xla")
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(model(x, training=True), y)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return lambda x, y: train_step(tf.constant(x), tf.constant(y))


@tf.function
def eval_loss(model, x, y):
    return loss_fn(model(x, training=False), y)


def evaluate(model: GPT, data, params, precision: str) -> float:
    """Mean loss over the fixed validation batches."""
    return float(np.mean([float(eval_loss(model, tf.constant(x), tf.constant(y)))
                          for x, y in loop.val_batches(data, params.block_size)]))


@tf.function
def forward(model, x):
    return model(x, training=False)


def logits_numpy(model: GPT, x: np.ndarray, precision: str) -> np.ndarray:
    return forward(model, tf.constant(x)).numpy()


def matmul_peak_gflops(precision: str, size: int, repeats: int = 5) -> float:
    """The best rate of (size x size) products at the cell's precision, in GFLOP/s."""
    dtype = tf.bfloat16 if precision == "bf16" else tf.float32
    a, b = (tf.cast(tf.random.normal((size, size), seed=i), dtype) for i in range(2))
    matmul = tf.function(tf.matmul)
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        env.sync(matmul(a, b))  # a CPU tf.function call returns once its result is computed
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def parity_probe(params, data, cell_dir: Path, precision: str) -> str:
    """Shared weights, the first training batch: logits and every gradient (before clipping)."""
    model = build_model(params, data, precision)
    x, y = neutral.batch(data["train_tokens"], data["train_offsets"][0], params.block_size)
    named = named_variables(model)
    with tf.GradientTape() as tape:
        logits = model(tf.constant(x), training=True)
        loss = loss_fn(logits, tf.constant(y))
    grads = tape.gradient(loss, [variable for variable, _ in named.values()])
    neutral_grads = {}
    for (name, (_, transposed)), grad in zip(named.items(), grads):
        value = tf.convert_to_tensor(grad).numpy()
        neutral_grads[name] = value.T if transposed else value
    return loop.save_probe(cell_dir, logits.numpy(), neutral_grads)


def run(cell, params, data, cell_dir: Path):
    keras.utils.set_random_seed(cell.seed)
    model = build_model(params, data, cell.precision)
    step = make_train_step(model, make_optimizer(model, params), params, cell.mode, cell.precision)
    runner = loop.GptRunner(step, env.sync, lambda losses: [float(v) for v in tf.stack(losses).numpy()],
                            lambda: evaluate(model, data, params, cell.precision), data, params.block_size)
    timing, blocks, series = loop.train(runner, params)
    sample = loop.generate(lambda x: logits_numpy(model, x, cell.precision), data["prompt"],
                           params.sample_tokens, params.block_size)
    count = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    # After every clock: the probe and the peak measurement leave training cold and undisturbed.
    artifacts = {"parity_probe": parity_probe(params, data, cell_dir, cell.precision)}
    peak = matmul_peak_gflops(cell.precision, params.peak_matmul_size)
    metrics = neutral.finish(params, data, timing, blocks, series, cell.precision, count, sample, peak)
    return metrics, series, artifacts
