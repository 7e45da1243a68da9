"""Digit CNN in Keras 3 on the backend the mode names, the way Keras' MNIST convnet example writes
it: keras.Sequential, model.compile + model.fit. Batches come from a `keras.utils.PyDataset` in the
task's per-epoch order (tf.data would put TensorFlow into JAX and PyTorch cells). `-jit` modes
pass jit_compile=True: jax.jit, XLA, torch.compile of Keras' own train step; without it Keras runs
JAX op by op, TensorFlow as a tf.function graph, PyTorch eagerly."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from spotdiff import measure
from spotdiff.backends.keras import env, weights
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.digits import common, keras_model
from spotdiff.tasks.digits.board import DigitsBoard, embedded_test_images
from spotdiff.tasks.digits.models import FLATTEN_CHW
from spotdiff.tasks.digits.spec import epoch_batches

BACKEND = keras.backend.backend()


def build_model(params, data, init: str, seed: int = 0, dropout: bool = True) -> keras.Model:
    # seed: unused; Keras seeds its layers from the global generators, which run seeds
    return keras_model.build_model(params, data, init, dropout)


class OrderedBatches(keras.utils.PyDataset):
    """The task's batch order, `epochs` x batches in one sequence (fit with steps_per_epoch), as
    Keras' backend-neutral input pipeline; each batch's ready time is appended to `ready_s`."""

    def __init__(self, data, batch_size: int, epochs: int, ready_s: list[float] | None = None):
        super().__init__()  # workers=1, no multiprocessing: batches are cut in this thread
        self.images, self.labels = data["x_train"][..., None], data["y_train"]  # (N, 28, 28, 1), (N,)
        orders = data["epoch_order"][:epochs]  # (E, N)
        self.batches = [index for order in orders for index in epoch_batches(order, batch_size)]
        self.steps_per_epoch = len(self.batches) // epochs
        self.ready_s = ready_s if ready_s is not None else []

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        batch = self.batches[index]
        images, labels = self.images[batch], self.labels[batch]  # (B, 28, 28, 1), (B,)
        self.ready_s.append(time.perf_counter())
        return images, labels


def make_dataset(data, batch_size: int, epochs: int, ready_s: list[float] | None = None) -> OrderedBatches:
    """The task's per-epoch order as a PyDataset of `epochs` x batches."""
    return OrderedBatches(data, batch_size, epochs, ready_s)


class EpochClock(keras.callbacks.Callback):
    """Per-epoch training time, input wait vs step time, and per-batch loss; evaluation runs
    after the clock stopped. Each step's end is read after the backend has finished it."""

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

    def on_train_begin(self, logs=None):
        del self.ready_s[:]  # fit reads one batch before training to build the model: not a step

    def on_epoch_begin(self, epoch, logs=None):
        self.running, self.first_batch, self.start = [], len(self.begin_s), time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self.begin_s.append(time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        env.sync(logs["loss"])
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
        means = np.asarray([float(ops.convert_to_numpy(v)) for v in self.running], np.float64)
        sizes = np.diff(np.minimum(np.arange(len(means) + 1) * self.batch_size, self.n_train))
        totals = means * np.cumsum(sizes)
        self.train_loss += list(np.diff(totals, prepend=0.0) / sizes)
        loss, accuracy, self.predictions = evaluate(self.model, self.data["x_test"], self.data["y_test"])
        self.test_loss.append(loss)
        self.test_accuracy.append(accuracy)
        self.after_epoch(epoch + 1)


def evaluate(model, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 1000) -> tuple[float, float, np.ndarray]:
    """Mean test loss, accuracy and predictions, in batches of `batch_size` images."""
    logits = model.predict(images[..., None], batch_size=batch_size, verbose=0)  # (N, 10) numpy
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    predictions = np.argmax(logits, 1)
    return float(ops.convert_to_numpy(loss)), float((predictions == labels).mean()), predictions


def logits_and_grads(model: keras.Model, images: np.ndarray, labels: np.ndarray, training: bool,
                     jit: bool = False) -> tuple[np.ndarray, list]:
    """Logits (B, 10) and the mean cross-entropy's gradient for every trainable variable, through
    the backend's autodiff (as Keras' custom-training guides write it), compiled when `jit`."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = ops.convert_to_tensor(images[..., None]), ops.convert_to_tensor(labels)  # (B, 28, 28, 1), (B,)
    if BACKEND == "jax":
        import jax

        def loss_and_logits(trainable, non_trainable, x, y):
            logits, _ = model.stateless_call(trainable, non_trainable, x, training=training)
            return loss_fn(y, logits), logits

        grad_fn = jax.value_and_grad(loss_and_logits, has_aux=True)
        grad_fn = jax.jit(grad_fn) if jit else grad_fn
        trainable = [v.value for v in model.trainable_variables]
        (_, logits), grads = grad_fn(trainable, [v.value for v in model.non_trainable_variables], x, y)
        return ops.convert_to_numpy(logits), grads
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def tape_step(x, y):
            with tf.GradientTape() as tape:
                logits = model(x, training=training)
                loss = loss_fn(y, logits)
            return logits, tape.gradient(loss, model.trainable_variables)

        logits, grads = tf.function(tape_step, jit_compile=jit)(x, y)  # off: a graph, as Keras' fit
        return ops.convert_to_numpy(logits), grads
    import torch

    def backward_step(x, y):
        logits = model(x, training=training)
        loss_fn(y, logits).backward()
        return logits.detach()

    logits = (torch.compile(backward_step) if jit else backward_step)(x, y)
    grads = [v.value.grad.detach().clone() for v in model.trainable_variables]
    for variable in model.trainable_variables:
        variable.value.grad = None
    return ops.convert_to_numpy(logits), grads


def compile_model(model: keras.Model, params, mode: str) -> None:
    model.compile(
        optimizer=keras.optimizers.SGD(**native_kwargs("tensorflow", "sgd", params.optimizer_hparams())),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=mode.endswith("-jit"),
    )


def parity_probe(params, data, cell_dir: Path, mode: str) -> str:
    """Shared init, dropout off, the task's batch order, through the cell's own mode:
    first-batch logits, every gradient, and the loss curve of one epoch."""
    model = build_model(params, data, "shared", dropout=False)
    x, y = common.probe_batch(data, params.batch_size)
    logits, grads = logits_and_grads(model, x, y, training=True, jit=mode.endswith("-jit"))
    neutral_grads = neutral(model, params.model, grads)
    compile_model(model, params, mode)
    clock = EpochClock({**data, "x_test": data["x_test"][:1], "y_test": data["y_test"][:1]},
                       params.batch_size)
    batches = make_dataset(data, params.batch_size, 1)
    model.fit(batches, epochs=1, steps_per_epoch=batches.steps_per_epoch, shuffle=False, verbose=0,
              callbacks=[clock])
    return common.save_probe(cell_dir, logits, neutral_grads, clock.train_loss)


def neutral(model: keras.Model, architecture: str, values=None) -> dict[str, np.ndarray]:
    """The model's variables (or `values`, one per trainable variable) in the neutral layout."""
    return weights.to_neutral(weights.named_variables(model, values), "fc1", FLATTEN_CHW[architecture])


def snapshot(model: keras.Model, architecture: str,
             probe: tuple[np.ndarray, np.ndarray]) -> tuple[dict, dict]:
    """Neutral parameters and the probe batch's gradients, dropout off (training=False)."""
    _, grads = logits_and_grads(model, *probe, training=False)
    return neutral(model, architecture), neutral(model, architecture, grads)


def penultimate(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N, D): the fc1 layer's output, dropout off."""
    features = keras.Model(model.inputs, model.get_layer("fc1").output)
    return features.predict(images[..., None], batch_size=1000, verbose=0)


def write_board_end(board: DigitsBoard, model: keras.Model, initial: dict, probe, series,
                    predictions) -> None:
    """After training: histograms at init, curves, filters, misclassified digits, the Projector
    (no graph: Keras has no backend-neutral graph of its own)."""
    if not board.enabled:
        return
    start = build_model(board.params, board.data, "native")
    weights.load_neutral(start, initial, "fc1", FLATTEN_CHW[board.params.model])
    board.snapshot(0, initial, snapshot(start, board.params.model, probe)[1])
    conv1 = neutral(model, board.params.model)["conv1.weight"]
    board.finish(series, conv1, penultimate(model, embedded_test_images(board.data)), predictions)


def run(cell, params, data, cell_dir: Path):
    artifacts = {}
    random.seed(cell.seed)  # Keras seeds its layers' SeedGenerators from Python's random
    np.random.seed(cell.seed)
    model = build_model(params, data, params.init)
    board = DigitsBoard(cell.tensorboard_dir, params, data)
    probe = common.probe_batch(data, params.batch_size)  # (B, 28, 28), (B,)
    # A copy only: the gradient at init is taken after training, so that the first epoch stays cold.
    initial = neutral(model, params.model)
    compile_model(model, params, cell.mode)
    ready_s: list[float] = []
    clock = EpochClock(data, params.batch_size,
                       lambda epoch: board.snapshot(epoch, *snapshot(model, params.model, probe)), ready_s)
    batches = make_dataset(data, params.batch_size, params.epochs, ready_s)
    model.fit(batches, epochs=params.epochs, steps_per_epoch=batches.steps_per_epoch,
              shuffle=False, verbose=0, callbacks=[clock])  # the order is the task's
    np.savez(cell_dir / "weights.npz", **neutral(model, params.model))
    artifacts["weights"] = "weights.npz"  # neutral layout, for `spotdiff export`
    metrics, series = common.finish(params, clock.epoch_s, len(data["y_train"]), clock.train_loss,
                                    clock.test_loss, clock.test_accuracy, clock.predictions, data["y_test"],
                                    model.count_params(), clock.input_s, clock.step_s)
    write_board_end(board, model, initial, probe, series, clock.predictions)
    if params.parity_probe:  # after the timed epochs, so that the first one stays cold
        artifacts["parity_probe"] = parity_probe(params, data, cell_dir, cell.mode)
    return metrics, series, artifacts


def _outputs_loss_grads(model: keras.Model, loss_fn, x: Any, y: Any) -> tuple[list, Any, list]:
    """keras_model.layer_outputs of `x`, the loss at the logits (the last output) and its gradient
    for every trainable variable, through the backend's autodiff, eagerly."""
    if BACKEND == "jax":
        import jax

        def loss_and_outputs(trainable: list) -> tuple[Any, list]:
            with keras.StatelessScope(state_mapping=list(zip(model.trainable_variables, trainable))):
                outputs = keras_model.layer_outputs(model, x)
            return loss_fn(y, outputs[-1]), outputs

        (loss, outputs), grads = jax.value_and_grad(loss_and_outputs, has_aux=True)(
            [v.value for v in model.trainable_variables])
        return outputs, loss, grads
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            outputs = keras_model.layer_outputs(model, x)
            loss = loss_fn(y, outputs[-1])
        return outputs, loss, tape.gradient(loss, model.trainable_variables)
    outputs = keras_model.layer_outputs(model, x)
    loss = loss_fn(y, outputs[-1])
    loss.backward()
    grads = [v.value.grad.detach().clone() for v in model.trainable_variables]
    for variable in model.trainable_variables:
        variable.value.grad = None
    return [out.detach() for out in outputs], loss.detach(), grads


def record_steps(
    params, data: dict[str, np.ndarray], steps: int, dtype: str, align: dict, mode: str, variant: str
) -> dict:
    """`spotdiff where`: `steps` SGD steps from the shared weights, dropout off, in `dtype`, on the
    mode's backend: every layer's output (the Sequential called one layer at a time, a fused
    activation recorded as its own relu layer), the loss, every gradient (the backend's autodiff)
    and every parameter after Keras' SGD update, in the neutral layout. Eager in every mode, as
    tf_impl and torch_impl record: a `-jit` mode records what its backend computes without jit."""
    from spotdiff.tasks.digits.models import WHERE_LAYERS, where_batches

    names = [name for name, _ in WHERE_LAYERS[params.model]]
    tensors: dict[str, np.ndarray] = {}
    with env.computing_in(dtype):  # float64: JAX's x64 on, Keras' promotion keeps float64
        model = build_model(params, data, "shared", dropout=False)
        optimizer = keras.optimizers.SGD(**native_kwargs("tensorflow", "sgd", params.optimizer_hparams()))
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        for index, (images, labels) in enumerate(where_batches(data, params.batch_size, steps)):
            x = ops.convert_to_tensor(images[..., None], dtype)  # (B, 28, 28, 1)
            outputs, loss, grads = _outputs_loss_grads(model, loss_fn, x, ops.convert_to_tensor(labels))
            for name, value in zip(names, outputs, strict=True):
                value = keras_model.neutral_activation(name, ops.convert_to_numpy(value), params.model)
                tensors[f"{index}/forward/{name}"] = value
            tensors[f"{index}/loss"] = np.array(ops.convert_to_numpy(loss))
            for key, value in neutral(model, params.model, grads).items():
                tensors[f"{index}/grad/{key}"] = value
            optimizer.apply(grads, model.trainable_variables)
            for key, value in neutral(model, params.model).items():
                tensors[f"{index}/param/{key}"] = value
    return {
        "tensors": tensors,
        "layers": WHERE_LAYERS[params.model],
        "params": list(weights.named_variables(model)),
        "optimizer": "sgd",
        "aligned": [],
    }
