"""The GPT in Keras 3 on the backend the mode names (KERAS_BACKEND, set before import): the Keras
layers of keras_model (the TensorFlow cells' model), trained by Keras' own trainer,
`model.compile(AdamW, loss, jit_compile=...)` and `train_on_batch` on the task's batches in order.
`-jit` modes compile Keras' train step with jax.jit, XLA or torch.compile; without it Keras runs
JAX op by op, TensorFlow as a tf.function graph, PyTorch eagerly. bf16: the Keras policy
`mixed_bfloat16` (float32 variables, bfloat16 compute), as in the TensorFlow cells."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

from spotdiff.backends.keras import env
from spotdiff.tasks.gpt import keras_model, loop
from spotdiff.tasks.gpt import spec as neutral
from spotdiff.tasks.gpt.keras_model import GPT

BACKEND = keras.backend.backend()


def build_model(params, data, precision: str) -> GPT:
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    return keras_model.build(params, data)


def loss_fn(logits, targets):
    return keras_model.mean_cross_entropy(logits, targets)


def make_optimizer(model: GPT, params) -> keras.optimizers.Optimizer:
    """Keras AdamW clipping the global norm, weight decay excluded from all but 2-D variables."""
    return keras_model.adamw(model, params)


def make_train_step(model: GPT, optimizer, params, mode: str, precision: str):
    """Keras' trainer: one `train_on_batch` per step (it returns the loss as a float: synced)."""
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=mode.endswith("-jit"))
    return lambda x, y: model.train_on_batch(x, y)


def evaluate(model: GPT, data, params, precision: str) -> float:
    """Mean loss over the fixed validation batches."""
    return float(np.mean([model.test_on_batch(x, y) for x, y in loop.val_batches(data, params.block_size)]))


def logits_numpy(model: GPT, x: np.ndarray, precision: str) -> np.ndarray:
    return np.asarray(model.predict_on_batch(x), np.float32)


def matmul_peak_gflops(precision: str, size: int, repeats: int = 5) -> float:
    """The best rate of (size x size) products at the cell's precision on the backend, in GFLOP/s."""
    dtype = "bfloat16" if precision == "bf16" else "float32"
    a, b = (keras.random.normal((size, size), seed=i, dtype=dtype) for i in range(2))
    env.sync(ops.matmul(a, b))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        env.sync(ops.matmul(a, b))
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def grads_of(model: GPT, x: np.ndarray, y: np.ndarray):
    """(loss, per-layer outputs, one gradient per trainable variable) through the backend's own
    autodiff, as Keras' custom-training guides write it (Keras has no backend-neutral one)."""
    if BACKEND == "jax":
        import jax

        def loss_and_outputs(values):
            with keras.StatelessScope(state_mapping=list(zip(model.trainable_variables, values))):
                logits, outputs = keras_model.recorded_forward(model, ops.convert_to_tensor(x))
                return keras_model.mean_cross_entropy(logits, y), outputs

        (loss, outputs), grads = jax.value_and_grad(loss_and_outputs, has_aux=True)(
            [v.value for v in model.trainable_variables])
        return loss, outputs, grads
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            logits, outputs = keras_model.recorded_forward(model, tf.constant(x))
            loss = keras_model.mean_cross_entropy(logits, tf.constant(y))
        grads = tape.gradient(loss, model.trainable_variables)
        return loss, outputs, [tf.convert_to_tensor(g) for g in grads]
    import torch

    logits, outputs = keras_model.recorded_forward(model, torch.from_numpy(x))
    loss = keras_model.mean_cross_entropy(logits, torch.from_numpy(y).long())
    loss.backward()  # as Keras' PyTorch guide: backward, then read .grad
    grads = []
    for variable in model.trainable_variables:
        grads.append(variable.value.grad.detach().clone())
        variable.value.grad = None
    return loss.detach(), {k: v.detach() for k, v in outputs.items()}, grads


def parity_probe(params, data, cell_dir: Path, precision: str) -> str:
    """Shared weights, the first training batch: logits and every gradient (before clipping)."""
    model = build_model(params, data, precision)
    x, y = neutral.batch(data["train_tokens"], data["train_offsets"][0], params.block_size)
    _, outputs, grads = grads_of(model, x, y)
    logits = np.asarray(ops.convert_to_numpy(outputs["lm_head"]), np.float32)
    grads = [np.asarray(ops.convert_to_numpy(g), np.float32) for g in grads]
    return loop.save_probe(cell_dir, logits, keras_model.to_neutral(model, grads))


def run(cell, params, data, cell_dir: Path):
    # Keras draws its layers' seeds from Python's and numpy's generators: env.configure seeded both.
    model = build_model(params, data, cell.precision)
    step = make_train_step(model, make_optimizer(model, params), params, cell.mode, cell.precision)
    runner = loop.GptRunner(step, env.sync, lambda losses: [float(v) for v in losses],
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
    """`spotdiff where`: `steps` AdamW steps from the shared weights in `dtype`, op by op, through
    the backend's autodiff (keras_model.record); honours the `gelu`, `layernorm_eps` and
    `adamw_eps` alignments. float64 only on the TensorFlow backend: elsewhere Keras' type promotion
    (keras.backend.result_type) turns float64 into float32 inside LayerNormalization."""
    if dtype == "float64" and BACKEND != "tensorflow":
        raise RuntimeError(f"Keras on {BACKEND} computes LayerNormalization in float32 even for float64 "
                           "inputs (keras.backend.result_type maps 64-bit to 32-bit off TensorFlow), so "
                           "no float64 floor can be measured: record Keras with --modes tensorflow")
    if BACKEND == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 exists only with x64
    return keras_model.record(params, data, steps, dtype, align, grads_of)
