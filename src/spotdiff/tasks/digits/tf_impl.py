"""Digit CNN in TensorFlow, the way the Keras MNIST convnet example writes it: keras.Sequential,
tf.data, model.compile + model.fit. Modes: `fit` (graph), `eager` (run_eagerly), `xla` (jit_compile)."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from spotdiff import measure
from spotdiff.backends.tensorflow import env, weights
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.digits import common, keras_model
from spotdiff.tasks.digits.board import DigitsBoard, embedded_test_images
from spotdiff.tasks.digits.models import FLATTEN_CHW


def build_model(params, data, init: str, seed: int = 0, dropout: bool = True) -> keras.Model:
    # seed: unused; Keras draws from the global seed, which run sets (keras.utils.set_random_seed)
    return keras_model.build_model(params, data, init, dropout)


def make_dataset(data, batch_size: int, epochs: int, ready_s: list[float] | None = None) -> tf.data.Dataset:
    """The task's per-epoch order as a tf.data pipeline of `epochs` x batches. With `ready_s`,
    the pipeline appends the time each batch is finished (before the prefetch buffer) to it."""
    images = tf.constant(data["x_train"][..., None])  # (N, 28, 28, 1)
    labels = tf.constant(data["y_train"])
    order = tf.constant(data["epoch_order"][:epochs])  # (E, N)
    batches = tf.data.Dataset.from_tensor_slices(order).flat_map(
        lambda epoch: tf.data.Dataset.from_tensor_slices(epoch).batch(batch_size)
    )
    batches = batches.map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))
    if ready_s is not None:
        batches = batches.map(lambda x, y: _stamped(x, y, ready_s))
    return batches.prefetch(tf.data.AUTOTUNE)


def _stamped(images: tf.Tensor, labels: tf.Tensor, ready_s: list[float]) -> tuple[tf.Tensor, tf.Tensor]:
    """The batch, once its gather is done and the clock read (tf.data maps run in order)."""
    def stamp(_):
        ready_s.append(time.perf_counter())
        return np.int32(0)

    done = tf.py_function(stamp, [labels], tf.int32)
    with tf.control_dependencies([done]):
        return tf.identity(images), tf.identity(labels)


class EpochClock(keras.callbacks.Callback):
    """Per-epoch training time, input wait vs step time, and per-batch loss; evaluation runs
    after the clock stopped.

    model.fit fetches each batch inside its train function, so a callback alone cannot see the
    input wait: each step's [begin, end] (end read after a device sync) is set against the time
    its batch left the pipeline (`ready_s`, stamped by `make_dataset`); see measure.split_input_wait.
    `async_safe`: Keras may hand over the batch logs as tensors; env.sync() is the only wait.
    """

    async_safe = True

    def __init__(self, data, batch_size: int, after_epoch=lambda epoch: None,
                 ready_s: list[float] | None = None):
        super().__init__()
        self.after_epoch = after_epoch  # called with the 1-based epoch, after the clock stopped
        self.data, self.epoch_s, self.train_loss = data, [], []
        self.batch_size, self.n_train = batch_size, len(data["y_train"])
        self.test_loss, self.test_accuracy, self.predictions = [], [], None
        self.ready_s = ready_s if ready_s is not None else []  # every batch of the run, in order
        self.begin_s: list[float] = []
        self.end_s: list[float] = []
        self.input_s: list[float] = []
        self.step_s: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.running, self.first_batch, self.start = [], len(self.begin_s), time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self.begin_s.append(time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        env.sync()
        self.end_s.append(time.perf_counter())
        self.running.append(logs["loss"])  # Keras reports the epoch's running mean

    def on_epoch_end(self, epoch, logs=None):
        env.sync()
        self.epoch_s.append(time.perf_counter() - self.start)
        if len(self.ready_s) >= len(self.end_s):
            steps = slice(self.first_batch, len(self.end_s))
            epoch_input_s, epoch_step_s = measure.split_input_wait(
                self.begin_s[steps], self.end_s[steps], self.ready_s[steps])
            self.input_s.append(epoch_input_s)
            self.step_s.append(epoch_step_s)
        # Keras reports the running mean weighted by batch size; recover each batch's own loss.
        means = np.asarray([float(v) for v in self.running], np.float64)
        sizes = np.diff(np.minimum(np.arange(len(means) + 1) * self.batch_size, self.n_train))
        totals = means * np.cumsum(sizes)
        self.train_loss += list(np.diff(totals, prepend=0.0) / sizes)
        loss, accuracy, self.predictions = evaluate(self.model, self.data["x_test"], self.data["y_test"])
        self.test_loss.append(loss)
        self.test_accuracy.append(accuracy)
        self.after_epoch(epoch + 1)


def debug_graph(params, data) -> tuple[keras.Model, tuple]:
    """What `spotdiff debug`'s graph probe traces: the CNN's forward, dropout off, on 8 training
    images (B, 28, 28, 1)."""
    model = build_model(params, data, "shared", dropout=False)
    return model, (tf.constant(data["x_train"][:8, ..., None]),)


def evaluate(
    model, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000
) -> tuple[float, float, np.ndarray]:
    """Mean test loss, accuracy and predictions, in batches of `batch_size` images."""
    logits = model.predict(images[..., None], batch_size=batch_size, verbose=0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    predictions = np.argmax(logits, 1)
    return float(loss), float((predictions == labels).mean()), predictions


def parity_probe(params, data, cell_dir: Path, mode: str) -> str:
    """Shared init, dropout off, the task's batch order, through the cell's own mode:
    first-batch logits, every gradient, and the loss curve of one epoch."""
    model = build_model(params, data, "shared", dropout=False)
    x, y = common.probe_batch(data, params.batch_size)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def logits_and_grads(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = loss_fn(labels, logits)
        return logits, tape.gradient(loss, model.trainable_variables)

    if mode != "eager":
        logits_and_grads = tf.function(logits_and_grads, jit_compile=mode == "xla")
    logits, grads = logits_and_grads(tf.constant(x[..., None]), tf.constant(y))
    neutral_grads = neutral(model, params.model, [g.numpy() for g in grads])
    model.compile(
        optimizer=keras.optimizers.SGD(**native_kwargs("tensorflow", "sgd", params.optimizer_hparams())),
        loss=loss_fn,
        run_eagerly=mode == "eager",
        jit_compile=mode == "xla",
    )
    clock = EpochClock(
        {**data, "x_test": data["x_test"][:1], "y_test": data["y_test"][:1]}, params.batch_size
    )
    steps = int(np.ceil(len(data["y_train"]) / params.batch_size))
    model.fit(
        make_dataset(data, params.batch_size, 1),
        epochs=1,
        steps_per_epoch=steps,
        verbose=0,
        callbacks=[clock],
    )
    return common.save_probe(cell_dir, logits.numpy(), neutral_grads, clock.train_loss)


def neutral(model: keras.Model, architecture: str, values=None) -> dict[str, np.ndarray]:
    """The model's variables (or `values`, one per trainable variable) in the neutral layout."""
    return weights.to_neutral(weights.named_variables(model, values), "fc1", FLATTEN_CHW[architecture])


def snapshot(model: keras.Model, architecture: str, probe: tuple[tf.Tensor, tf.Tensor]) -> tuple[dict, dict]:
    """Neutral parameters and the probe batch's gradients, dropout off (training=False)."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(probe[1], model(probe[0], training=False))
    grads = tape.gradient(loss, model.trainable_variables)
    return neutral(model, architecture), neutral(model, architecture, [g.numpy() for g in grads])


def penultimate(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N, D): the fc1 layer's output, dropout off."""
    features = keras.Model(model.inputs, model.get_layer("fc1").output)
    return features.predict(images[..., None], batch_size=1000, verbose=0)


def write_board_end(
    board: DigitsBoard, model: keras.Model, initial: dict, probe, series, predictions
) -> None:
    """After training: histograms at init, the forward graph as tf.function traces it, curves,
    filters, misclassified digits, the Projector."""
    from spotdiff.backends.tensorflow.tensorboard import write_graph

    if not board.enabled:
        return
    start = build_model(board.params, board.data, "native")
    weights.load_neutral(start, initial, "fc1", FLATTEN_CHW[board.params.model])
    board.snapshot(0, initial, snapshot(start, board.params.model, probe)[1])
    write_graph(
        board.board, tf.function(model).get_concrete_function(tf.TensorSpec([None, 28, 28, 1], tf.float32))
    )
    conv1 = neutral(model, board.params.model)["conv1.weight"]
    board.finish(series, conv1, penultimate(model, embedded_test_images(board.data)), predictions)


def run(cell, params, data, cell_dir: Path):
    artifacts = {}
    keras.utils.set_random_seed(cell.seed)
    model = build_model(params, data, params.init)
    board = DigitsBoard(cell.tensorboard_dir, params, data)
    x, y = common.probe_batch(data, params.batch_size)
    probe = (tf.constant(x[..., None]), tf.constant(y))
    # A copy only: the gradient at init is taken after training, so that the first epoch stays cold.
    initial = neutral(model, params.model)
    model.compile(
        optimizer=keras.optimizers.SGD(**native_kwargs("tensorflow", "sgd", params.optimizer_hparams())),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=cell.mode == "eager",
        jit_compile=cell.mode == "xla",
    )
    ready_s: list[float] = []
    clock = EpochClock(
        data,
        params.batch_size,
        lambda epoch: board.snapshot(epoch, *snapshot(model, params.model, probe)),
        ready_s,
    )
    steps = int(np.ceil(len(data["y_train"]) / params.batch_size))
    model.fit(
        make_dataset(data, params.batch_size, params.epochs, ready_s),
        epochs=params.epochs,
        steps_per_epoch=steps,
        verbose=0,
        callbacks=[clock],
    )
    np.savez(cell_dir / "weights.npz", **neutral(model, params.model))
    artifacts["weights"] = "weights.npz"  # neutral layout, for `spotdiff export`
    metrics, series = common.finish(
        params,
        clock.epoch_s,
        len(data["y_train"]),
        clock.train_loss,
        clock.test_loss,
        clock.test_accuracy,
        clock.predictions,
        data["y_test"],
        model.count_params(),
        clock.input_s,
        clock.step_s,
    )
    write_board_end(board, model, initial, probe, series, clock.predictions)
    if params.parity_probe:  # after the timed epochs, so that the first one stays cold
        artifacts["parity_probe"] = parity_probe(params, data, cell_dir, cell.mode)
    return metrics, series, artifacts


def record_steps(
    params, data: dict[str, np.ndarray], steps: int, dtype: str, align: dict, mode: str, variant: str
) -> dict:
    """`spotdiff where`: `steps` SGD steps from the shared weights, dropout off, in `dtype`: every
    layer's output (recorded NCHW, flatten in C,H,W order), the loss, every gradient and every
    parameter after the update, in the neutral layout. The Keras model called layer by layer,
    eagerly; a fused activation (Dense(activation="relu")) is recorded as its own relu layer."""
    from spotdiff.tasks.digits.models import WHERE_LAYERS, where_batches

    # Keras 3 layers take the global dtype *policy*, which set_floatx alone leaves at float32 (a
    # float64 run was float32 throughout); losses and optimiser variables take floatx: set both.
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        model = build_model(params, data, "shared", dropout=False)
        optimizer = keras.optimizers.SGD(**native_kwargs("tensorflow", "sgd", params.optimizer_hparams()))
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)
    names = [name for name, _ in WHERE_LAYERS[params.model]]
    tensors: dict[str, np.ndarray] = {}
    for index, (images, labels) in enumerate(where_batches(data, params.batch_size, steps)):
        with tf.GradientTape() as tape:
            outputs = keras_model.layer_outputs(model, tf.constant(images[..., None], dtype=dtype))
            loss = loss_fn(tf.constant(labels), outputs[-1])
        for name, value in zip(names, outputs, strict=True):
            value = keras_model.neutral_activation(name, value.numpy(), params.model)
            tensors[f"{index}/forward/{name}"] = value
        tensors[f"{index}/loss"] = loss.numpy()
        grads = tape.gradient(loss, model.trainable_variables)
        for key, value in neutral(model, params.model, [g.numpy() for g in grads]).items():
            tensors[f"{index}/grad/{key}"] = value
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        for key, value in neutral(model, params.model).items():
            tensors[f"{index}/param/{key}"] = value
    return {
        "tensors": tensors,
        "layers": WHERE_LAYERS[params.model],
        "params": list(weights.named_variables(model)),
        "optimizer": "sgd",
        "aligned": [],
    }
