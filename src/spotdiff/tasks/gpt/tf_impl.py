"""The GPT in TensorFlow, as Keras users write a custom transformer: the Keras layers of keras_model
(one fused qkv Dense and keras.ops.dot_product_attention(is_causal=True) instead of
MultiHeadAttention, whose separate q/k/v kernels are not GPT-2's layout), Keras AdamW with
global_clipnorm and 2-D-only decay, a tf.function training step over GradientTape; `xla` adds
jit_compile=True. bf16: the Keras mixed precision policy `mixed_bfloat16` (float32 variables,
bfloat16 compute)."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from spotdiff.backends.tensorflow import env
from spotdiff.tasks.gpt import keras_model, loop
from spotdiff.tasks.gpt import spec as neutral
from spotdiff.tasks.gpt.keras_model import GPT


def build_model(params, data, precision: str) -> GPT:
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    return keras_model.build(params, data)


loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def loss_fn(logits, targets):
    return loss_object(targets, logits)


def make_optimizer(model: GPT, params) -> keras.optimizers.Optimizer:
    """Keras AdamW clipping the global norm, weight decay excluded from all but 2-D variables."""
    return keras_model.adamw(model, params)


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
    with tf.GradientTape() as tape:
        logits = model(tf.constant(x), training=True)
        loss = loss_fn(logits, tf.constant(y))
    grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]
    return loop.save_probe(cell_dir, logits.numpy(), keras_model.to_neutral(model, grads))


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


def record_steps(params, data, steps: int, dtype: str, align: dict, mode: str, variant: str) -> dict:
    """`spotdiff where`: `steps` AdamW steps from the shared weights in `dtype`, eagerly, the model's
    layers called one at a time under a GradientTape (keras_model.record); honours the `gelu`,
    `layernorm_eps` and `adamw_eps` alignments."""
    def grad_fn(model, x, y):
        with tf.GradientTape() as tape:
            logits, outputs = keras_model.recorded_forward(model, tf.constant(x))
            loss = keras_model.mean_cross_entropy(logits, tf.constant(y))
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]
        return loss, outputs, grads

    return keras_model.record(params, data, steps, dtype, align, grad_fn)
