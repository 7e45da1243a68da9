"""The sequence classifier in TensorFlow/Keras with a custom loop under tf.function: a fixed input
signature (pad-max), relaxed shapes (pad-batch), or Keras masking (packed); traces counted."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from spotdiff import parity
from spotdiff.backends.tensorflow import weights
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.sequences import spec as neutral

FRAMEWORK = "tensorflow"


class SequenceClassifier(keras.Model):
    """Embedding -> LSTM -> linear on the state after each sequence's last real token."""

    def __init__(self, vocab: int, embed: int, hidden: int, masked: bool):
        super().__init__()
        self.masked = masked
        self.embedding = keras.layers.Embedding(vocab, embed, mask_zero=masked)
        # Masked: Keras carries the state over padded steps and returns the last real one.
        self.lstm = keras.layers.LSTM(hidden, return_sequences=not masked)
        self.fc = keras.layers.Dense(2)

    def call(self, tokens, lengths):
        x = self.embedding(tokens)  # (B, T, E)
        if self.masked:
            return self.fc(self.lstm(x))  # mask propagates from the embedding
        outputs = self.lstm(x)  # (B, T, H)
        last = tf.gather(outputs, lengths - 1, batch_dims=1)  # (B, H)
        return self.fc(last)  # (B, 2)


def build_model(params, data, mode: str) -> keras.Model:
    model = SequenceClassifier(params.vocab, params.embed, params.hidden, masked=mode == "packed")
    model(tf.ones((1, 2), tf.int32), tf.ones((1,), tf.int32))  # build
    weights.load_lstm_neutral(model.embedding, model.lstm, model.fc, neutral.neutral_weights(data))
    return model


def loss_fn(logits, labels):
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def make_optimizer(model: keras.Model, params) -> keras.optimizers.Optimizer:
    # learning_rate, and epsilon when aligned
    optimizer = keras.optimizers.Adam(**native_kwargs("tensorflow", "adam", params.optimizer_hparams()))
    # Built now, not on the first step: variables created while tracing force a second trace.
    optimizer.build(model.trainable_variables)
    return optimizer


def batch_tensors(data, split: str, index: np.ndarray, mode: str, max_len: int):
    lengths = data[f"len_{split}"][index]
    width = neutral.padded_width(FRAMEWORK, mode, lengths, max_len)
    return (tf.constant(data[f"x_{split}"][index, :width]), tf.constant(lengths.astype(np.int32)),
            tf.constant(data[f"y_{split}"][index]))


def evaluate(model, data, mode: str, params) -> float:
    predict = tf.function(lambda t, n: tf.argmax(model(t, n), axis=1), reduce_retracing=True)
    correct = 0
    for index in neutral.epoch_batches(np.arange(len(data["y_test"])), 256):
        tokens, lengths, labels = batch_tensors(data, "test", index, mode, params.max_len)
        correct += int(tf.reduce_sum(tf.cast(predict(tokens, lengths) == labels, tf.int32)))
    return correct / len(data["y_test"])


def build_runner(model, optimizer, mode: str, max_len: int, return_grads: bool = False):
    """The train step as a tf.function: pad-max with one fixed signature, the others with
    reduce_retracing so that new lengths generalise the trace instead of multiplying it.
    It returns the loss, or (loss, dense gradients) with `return_grads` (the parity probe)."""
    def step(tokens, lengths, labels):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(model(tokens, lengths), labels))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return (loss, [tf.convert_to_tensor(g) for g in grads]) if return_grads else loss

    if mode == "pad-max":
        signature = [tf.TensorSpec([None, max_len], tf.int32), tf.TensorSpec([None], tf.int32),
                     tf.TensorSpec([None], tf.int64)]
        return tf.function(step, input_signature=signature)
    return tf.function(step, reduce_retracing=True)


def parity_probe(params, data, cell_dir: Path, mode: str) -> str:
    """Shared weights, the first batch, one SGD step through this mode's train step: the loss,
    every gradient and the parameters after the step, in the probe's (in, out) layout."""
    model = build_model(params, data, mode)
    optimizer = keras.optimizers.SGD(learning_rate=params.lr)
    optimizer.build(model.trainable_variables)
    step = build_runner(model, optimizer, mode, params.max_len, return_grads=True)
    loss, grads = step(*batch_tensors(data, "train", neutral.probe_batch(data, params.batch_size), mode,
                                      params.max_len))
    grads_by_name, params_by_name = _probe_layout(model, grads), _probe_layout(model)
    return parity.save_probe(cell_dir, float(loss), grads_by_name, params_by_name)


def _probe_layout(model: SequenceClassifier, values=None) -> dict[str, np.ndarray]:
    """The trainable variables (or matching gradients) by their probe names: Keras' layout is the
    probe's (in, out) layout already."""
    variables = model.trainable_variables
    names = {id(model.embedding.embeddings): "embedding", id(model.lstm.cell.kernel): "lstm_kernel",
             id(model.lstm.cell.recurrent_kernel): "lstm_recurrent", id(model.lstm.cell.bias): "lstm_bias",
             id(model.fc.kernel): "fc_kernel", id(model.fc.bias): "fc_bias"}
    values = variables if values is None else values
    return {names[id(v)]: np.asarray(tf.convert_to_tensor(x)) for v, x in zip(variables, values)}


def run(cell, params, data, cell_dir: Path):
    keras.utils.set_random_seed(cell.seed)
    model = build_model(params, data, cell.mode)
    tokens, lengths, labels = batch_tensors(data, "train", neutral.probe_batch(data, params.batch_size),
                                            cell.mode, params.max_len)
    first_batch_loss = float(tf.reduce_mean(loss_fn(model(tokens, lengths), labels)))
    step = build_runner(model, make_optimizer(model, params), cell.mode, params.max_len)
    epoch_s, train_loss = [], []
    for order in data["epoch_order"]:
        start = time.perf_counter()
        losses = [step(*batch_tensors(data, "train", index, cell.mode, params.max_len))
                  for index in neutral.epoch_batches(order, params.batch_size)]
        losses[-1].numpy()  # wait for the last step
        epoch_s.append(time.perf_counter() - start)
        train_loss += [float(loss) for loss in losses]
    metrics, series = neutral.finish(params, data, FRAMEWORK, cell.mode, epoch_s, train_loss,
                                     compilations=int(step.experimental_get_tracing_count()),
                                     test_accuracy=evaluate(model, data, cell.mode, params),
                                     first_batch_loss=first_batch_loss)
    artifacts = {}
    if params.parity_probe:  # after the timed epochs, so that the first one stays cold
        artifacts["parity_probe"] = parity_probe(params, data, cell_dir, cell.mode)
    return metrics, series, artifacts


def record_steps(params, data, steps: int, dtype: str, align: dict, mode: str, variant: str) -> dict:
    """`spotdiff where`: `steps` Adam steps from the shared weights in `dtype` on the first batches
    of epoch 1, through this mode's train step (a tf.function): every layer's output (the embedding
    and the LSTM's outputs (B, T, H) cut to the batch's longest sequence, the LSTM's outputs zero
    past each end; the state at the last real token (B, H); the logits), the loss, every gradient
    and every parameter after the update, in the probe's (in, out) layout. The layers are called
    one by one, eagerly, from the step's starting weights (the packed LSTM with its mask and
    return_sequences on for the recording: the same states, every step of them).

    align {"adam_eps": "hat"}: Keras' Adam computes epsilon-hat already, said explicitly.
    align {"sparse_grads": "dense"}: the embedding's gradient made dense before the update.
    align {"adam_eps_value": eps}: that eps passed."""
    from spotdiff.backends.tensorflow import optim
    from spotdiff.tasks.shared import honoured, where_adam

    # variant: unused, the one variant is Adam
    # Keras 3 layers take the global dtype policy and optimiser variables floatx: set both to build.
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        model = build_model(params, data, mode)
        adam = native_kwargs("tensorflow", "adam", where_adam(params.optimizer_hparams(), align))
        # Keras casts Python floats through float32: betas as numpy scalars keep a float64 run's
        # bias correction in float64 (1 - 0.999 through float32 is 1.3e-5 off).
        betas = {name: getattr(np, dtype)(value) for name, value in (("beta_1", 0.9), ("beta_2", 0.999))}
        optimizer = keras.optimizers.Adam(**adam, **betas)
        optimizer.build(model.trainable_variables)
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)
    step = build_runner(model, optim.aligned(optimizer, align), mode, params.max_len, return_grads=True)
    tensors: dict[str, np.ndarray] = {}
    for index, rows in enumerate(neutral.where_batches(data, params.batch_size, steps)):
        tokens, lengths, labels = batch_tensors(data, "train", rows, mode, params.max_len)
        embedded = model.embedding(tokens)  # (B, W, E)
        model.lstm.return_sequences = True
        try:
            outputs = model.lstm(embedded, mask=model.embedding.compute_mask(tokens))  # (B, W, H)
        finally:
            model.lstm.return_sequences = not model.masked
        last = tf.gather(outputs, lengths - 1, batch_dims=1)  # (B, H)
        recorded = {"embedding": embedded.numpy()[:, : int(lengths.numpy().max())],
                    "lstm": neutral.where_lstm_outputs(outputs.numpy(), lengths.numpy()),
                    "last": last.numpy(), "fc": model.fc(last).numpy()}
        for name, value in recorded.items():
            tensors[f"{index}/forward/{name}"] = value
        loss, grads = step(tokens, lengths, labels)
        tensors[f"{index}/loss"] = loss.numpy()
        for key, value in neutral.where_named(_probe_layout(model, grads)).items():
            tensors[f"{index}/grad/{key}"] = value
        for key, value in neutral.where_named(_probe_layout(model)).items():
            tensors[f"{index}/param/{key}"] = value
    return {"tensors": tensors, "layers": neutral.WHERE_LAYERS, "params": list(neutral.WHERE_PARAMS.values()),
            "optimizer": "adam", "aligned": honoured(align)}

