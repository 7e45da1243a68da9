"""Digit CNN in JAX, the way Flax's MNIST example writes it: a Flax NNX module, Optax SGD with
momentum, an nnx.jit train step; batches come from the task's per-epoch order."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from spotdiff import measure
from spotdiff.backends.jax import env, weights
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.digits import common
from spotdiff.tasks.digits.board import DigitsBoard, embedded_test_images
from spotdiff.tasks.digits.models import FLATTEN_CHW
from spotdiff.tasks.digits.spec import epoch_batches, neutral_weights

LAYERS = ["conv1", "conv2", "fc1", "fc2"]


class ExamplesNet(nnx.Module):
    """pytorch/examples' MNIST net, channels-last."""

    def __init__(self, rngs: nnx.Rngs, dropout: bool = True):
        self.conv1 = nnx.Conv(1, 10, (5, 5), padding="VALID", rngs=rngs)
        self.conv2 = nnx.Conv(10, 20, (5, 5), padding="VALID", rngs=rngs)
        self.conv2_drop = nnx.Dropout(
            0.5 if dropout else 0.0, broadcast_dims=(1, 2), rngs=rngs
        )  # whole channels
        self.fc1 = nnx.Linear(320, 50, rngs=rngs)
        self.drop = nnx.Dropout(0.5 if dropout else 0.0, rngs=rngs)
        self.fc2 = nnx.Linear(50, 10, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:  # (B, 28, 28, 1) -> (B, 50) penultimate
        x = nnx.relu(nnx.max_pool(self.conv1(x), (2, 2), (2, 2)))  # (B, 12, 12, 10)
        x = nnx.relu(nnx.max_pool(self.conv2_drop(self.conv2(x)), (2, 2), (2, 2)))  # (B, 4, 4, 20)
        x = x.reshape(x.shape[0], -1)  # (B, 320) in (H, W, C) order
        return nnx.relu(self.fc1(x))

    def __call__(self, x: jax.Array) -> jax.Array:  # (B, 28, 28, 1) -> (B, 10)
        return self.fc2(self.drop(self.features(x)))


class LayersNet(nnx.Module):
    """The tf.layers tutorial's net."""

    def __init__(self, rngs: nnx.Rngs, dropout: bool = True):
        self.conv1 = nnx.Conv(1, 32, (5, 5), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, (5, 5), padding="SAME", rngs=rngs)
        self.fc1 = nnx.Linear(7 * 7 * 64, 1024, rngs=rngs)
        self.drop = nnx.Dropout(0.4 if dropout else 0.0, rngs=rngs)
        self.fc2 = nnx.Linear(1024, 10, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:  # (B, 28, 28, 1) -> (B, 1024) penultimate
        x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), (2, 2))  # (B, 14, 14, 32)
        x = nnx.max_pool(nnx.relu(self.conv2(x)), (2, 2), (2, 2))  # (B, 7, 7, 64)
        x = x.reshape(x.shape[0], -1)  # (B, 3136)
        return nnx.relu(self.fc1(x))

    def __call__(self, x: jax.Array) -> jax.Array:  # (B, 28, 28, 1) -> (B, 10)
        return self.fc2(self.drop(self.features(x)))


def build_model(params, data, init: str, seed: int = 0, dropout: bool = True) -> nnx.Module:
    model = (ExamplesNet if params.model == "pytorch-examples" else LayersNet)(nnx.Rngs(seed), dropout)
    if init == "shared":
        weights.load_neutral(model, neutral_weights(data), "fc1", FLATTEN_CHW[params.model])
    return model


def loss_fn(model: nnx.Module, images: jax.Array, labels: jax.Array) -> jax.Array:
    logits = model(images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@nnx.jit
def train_step(
    model: nnx.Module, optimizer: nnx.Optimizer, images: jax.Array, labels: jax.Array
) -> jax.Array:
    loss, grads = nnx.value_and_grad(loss_fn)(model, images, labels)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def eval_logits(model: nnx.Module, images: jax.Array) -> jax.Array:
    return model(images)


def debug_graph(params, data) -> tuple[nnx.Module, tuple]:
    """What `spotdiff debug`'s graph probe traces: the CNN's forward, dropout off, on 8 training
    images (B, 28, 28, 1)."""
    model = build_model(params, data, "shared", dropout=False)
    return model, (jnp.asarray(data["x_train"][:8, ..., None]),)


def evaluate(
    model, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000
) -> tuple[float, float, np.ndarray]:
    """Mean test loss, accuracy and predictions, in batches of `batch_size` images."""
    model.eval()
    loss_sum, predictions = 0.0, []
    for start in range(0, len(labels), batch_size):
        logits = eval_logits(model, jnp.asarray(images[start : start + batch_size][..., None]))
        target = jnp.asarray(labels[start : start + batch_size])
        loss_sum += float(optax.softmax_cross_entropy_with_integer_labels(logits, target).sum())
        predictions.append(np.asarray(jnp.argmax(logits, 1)))
    model.train()
    predictions = np.concatenate(predictions)
    return loss_sum / len(labels), float((predictions == labels).mean()), predictions


def epoch_loader(data, order: np.ndarray, batch_size: int):
    """The epoch's numpy batches in the task's order, (images (B, 28, 28, 1), labels), drawn lazily."""
    images, labels = data["x_train"], data["y_train"]
    return ((images[index][..., None], labels[index]) for index in epoch_batches(order, batch_size))


def train_epoch(model, step, loader) -> tuple[list[jax.Array], float, float]:
    """One epoch: the step's losses (on the device), input_s (numpy indexing + copy to the
    device, waited for) and step_s (train_step until its loss is ready)."""
    # model: unused; the step holds it (make_step), and NNX modules stay in train mode
    batches = (jax.block_until_ready((jnp.asarray(x), jnp.asarray(y))) for x, y in loader)
    return measure.timed_epoch(batches, lambda batch: step(*batch), env.sync)


def parity_probe(params, data, cell_dir: Path, mode: str) -> str:
    """Shared init, dropout off, the task's batch order: first-batch logits, gradients, one epoch
    (the epoch through the mode's step; logits and gradients are computed as is)."""
    model = build_model(params, data, "shared", dropout=False)
    x, y = common.probe_batch(data, params.batch_size)
    images, labels = jnp.asarray(x[..., None]), jnp.asarray(y)
    logits = eval_logits(model, images)  # compiled, as training's steps are: op by op, every
    grads = probe_grads(model, images, labels)  # operation and its gradient would compile on its own
    neutral_grads = neutral(model, params.model, grads)
    optimizer = nnx.Optimizer(
        model, optax.sgd(**native_kwargs("jax", "sgd", params.optimizer_hparams())), wrt=nnx.Param
    )
    loader = epoch_loader(data, data["epoch_order"][0], params.batch_size)
    losses, _, _ = train_epoch(model, make_step(model, optimizer, mode), loader)
    curve = [float(v) for v in jax.device_get(losses)]
    return common.save_probe(cell_dir, np.asarray(logits), neutral_grads, curve)


def make_step(model, optimizer, mode: str):
    """The train step as mode `mode` calls it. `jit`: the nnx.jit function called directly, as
    Flax's MNIST tutorial writes it (each call flattens the model and optimizer graphs);
    `jit-cached`: through nnx.cached_partial, Flax's fast path (the graph traversal cached once;
    the graph must not change while it is used: one per epoch, model and optimizer in train mode)."""
    if mode == "jit-cached":
        return nnx.cached_partial(train_step, model, optimizer)
    return lambda images, labels: train_step(model, optimizer, images, labels)


def neutral(model: nnx.Module, architecture: str, values=None) -> dict[str, np.ndarray]:
    """The model's parameters (or `values`, a tree of the same shape: gradients) in the neutral layout."""
    tree = nnx.state(model, nnx.Param) if values is None else values
    return weights.to_neutral(weights.named_params(tree, LAYERS), "fc1", FLATTEN_CHW[architecture])


@nnx.jit
def probe_grads(model: nnx.Module, images: jax.Array, labels: jax.Array) -> nnx.State:
    return nnx.grad(loss_fn)(model, images, labels)


@nnx.jit
def eval_features(model: nnx.Module, images: jax.Array) -> jax.Array:
    return model.features(images)


def snapshot(model: nnx.Module, architecture: str, probe: tuple[jax.Array, jax.Array]) -> tuple[dict, dict]:
    """Neutral parameters and the probe batch's gradients, dropout off (eval mode draws no random bits)."""
    model.eval()
    grads = probe_grads(model, *probe)
    model.train()
    return neutral(model, architecture), neutral(model, architecture, grads)


def penultimate(model: nnx.Module, images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N, D) features before the classifier, dropout off."""
    model.eval()
    features = np.asarray(eval_features(model, jnp.asarray(images[..., None])))
    model.train()
    return features


def write_board_end(board: DigitsBoard, model: nnx.Module, initial: dict, probe, series, predictions) -> None:
    """After training: histograms at init, the forward pass's jaxpr as a graph, curves, filters,
    misclassified digits, the Projector."""
    from spotdiff.backends.jax.tensorboard import write_graph

    if not board.enabled:
        return
    architecture = board.params.model
    start = build_model(board.params, board.data, "native")
    weights.load_neutral(start, initial, "fc1", FLATTEN_CHW[architecture])
    board.snapshot(0, initial, snapshot(start, architecture, probe)[1])
    model.eval()
    graphdef, state = nnx.split(model)
    write_graph(
        board.board,
        lambda state, images: nnx.merge(graphdef, state)(images),
        (state, probe[0][:1]),
        ("model", "images"),
    )
    model.train()
    conv1 = neutral(model, architecture)["conv1.weight"]
    board.finish(series, conv1, penultimate(model, embedded_test_images(board.data)), predictions)


def run(cell, params, data, cell_dir: Path):
    artifacts = {}
    model = build_model(params, data, params.init, seed=cell.seed)
    board = DigitsBoard(cell.tensorboard_dir, params, data)
    x, y = common.probe_batch(data, params.batch_size)
    probe = (jnp.asarray(x[..., None]), jnp.asarray(y))
    # A copy only: the gradient at init is taken after training, so that the first epoch stays cold.
    initial = neutral(model, params.model)
    optimizer = nnx.Optimizer(
        model, optax.sgd(**native_kwargs("jax", "sgd", params.optimizer_hparams())), wrt=nnx.Param
    )
    epoch_s, input_s, step_s, train_loss, test_loss, test_accuracy = [], [], [], [], [], []
    for epoch in range(1, params.epochs + 1):
        start = time.perf_counter()
        step = make_step(model, optimizer, cell.mode)  # one per epoch: evaluate switches modes
        loader = epoch_loader(data, data["epoch_order"][epoch - 1], params.batch_size)
        losses, epoch_input_s, epoch_step_s = train_epoch(model, step, loader)
        jax.block_until_ready(losses)
        epoch_s.append(time.perf_counter() - start)
        input_s.append(epoch_input_s)
        step_s.append(epoch_step_s)
        train_loss += [float(v) for v in jax.device_get(losses)]  # fetched after the clock stopped
        loss, accuracy, predictions = evaluate(model, data["x_test"], data["y_test"])
        test_loss.append(loss)
        test_accuracy.append(accuracy)
        board.snapshot(epoch, *snapshot(model, params.model, probe))
    param_count = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    np.savez(cell_dir / "weights.npz", **neutral(model, params.model))
    artifacts["weights"] = "weights.npz"  # neutral layout, for `spotdiff export`
    metrics, series = common.finish(
        params,
        epoch_s,
        len(data["y_train"]),
        train_loss,
        test_loss,
        test_accuracy,
        predictions,
        data["y_test"],
        param_count,
        input_s,
        step_s,
    )
    write_board_end(board, model, initial, probe, series, predictions)
    if params.parity_probe:  # after the timed epochs, so that the first one stays cold
        artifacts["parity_probe"] = parity_probe(params, data, cell_dir, cell.mode)
    return metrics, series, artifacts


def record_steps(
    params, data: dict[str, np.ndarray], steps: int, dtype: str, align: dict, mode: str, variant: str
) -> dict:
    """`spotdiff where`: `steps` SGD steps from the shared weights, dropout off, in `dtype`: every
    layer's output (recorded NCHW, flatten in C,H,W order), the loss, every gradient and every
    parameter after the update, in the neutral layout. The NNX modules called layer by layer."""
    from spotdiff.tasks.digits.models import WHERE_LAYERS, where_batches

    jax.config.update("jax_enable_x64", True)  # float64 exists only with x64; float32 stays explicit
    model = build_model(params, data, "shared", dropout=False)
    for layer in LAYERS:
        for attr in ("kernel", "bias"):
            param = getattr(getattr(model, layer), attr)
            param.value = param.value.astype(dtype)
    optimizer = nnx.Optimizer(
        model, optax.sgd(**native_kwargs("jax", "sgd", params.optimizer_hparams())), wrt=nnx.Param
    )
    layers = WHERE_LAYERS[params.model]
    pool = lambda x: nnx.max_pool(x, (2, 2), (2, 2))  # noqa: E731
    flat = lambda x: x.reshape(x.shape[0], -1)  # noqa: E731

    def forward(model: nnx.Module, x: jax.Array, y: jax.Array):
        ops = {
            "conv1": model.conv1,
            "conv2": model.conv2,
            "fc1": model.fc1,
            "fc2": model.fc2,
            "flatten": flat,
            "relu1": nnx.relu,
            "relu2": nnx.relu,
            "relu3": nnx.relu,
            "pool1": pool,
            "pool2": pool,
        }
        outputs = {}
        for name, _ in layers:
            x = ops[name](x)
            outputs[name] = x
        return optax.softmax_cross_entropy_with_integer_labels(x, y).mean(), outputs

    def neutral_activation(name: str, value: np.ndarray) -> np.ndarray:
        if value.ndim == 4:
            return value.transpose(0, 3, 1, 2)  # NHWC -> NCHW
        if name == "flatten":  # (H, W, C) order -> (C, H, W)
            value = value.reshape(len(value), *FLATTEN_CHW[params.model][1:], -1).transpose(0, 3, 1, 2)
            return value.reshape(len(value), -1)
        return value

    tensors: dict[str, np.ndarray] = {}
    for index, (images, labels) in enumerate(where_batches(data, params.batch_size, steps)):
        x, y = jnp.asarray(images[..., None], dtype=dtype), jnp.asarray(labels)
        (loss, outputs), grads = nnx.value_and_grad(forward, has_aux=True)(model, x, y)
        for name, value in outputs.items():
            tensors[f"{index}/forward/{name}"] = neutral_activation(name, np.asarray(value))
        tensors[f"{index}/loss"] = np.asarray(loss)
        for key, value in neutral(model, params.model, grads).items():
            tensors[f"{index}/grad/{key}"] = value
        optimizer.update(model, grads)
        for key, value in neutral(model, params.model).items():
            tensors[f"{index}/param/{key}"] = value
    names = [f"{layer}.{kind}" for layer in LAYERS for kind in ("weight", "bias")]
    return {"tensors": tensors, "layers": layers, "params": names, "optimizer": "sgd", "aligned": []}
