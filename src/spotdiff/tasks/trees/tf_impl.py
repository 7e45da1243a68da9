"""The recursive tree network in TensorFlow. `eager`: a Python recursion under GradientTape, as in
PyTorch. `function`: the same recursion inside tf.function, one tree's loss and gradients per call;
the tree's shape is a Python argument, so every new shape is a new trace (counted with
experimental_get_tracing_count).

A tf.Module with raw ops rather than Keras layers: a Keras layer call costs far more than the few
ops of one tree node in eager mode, and the TensorFlow guides write custom recursions this way."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from spotdiff import parity
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.trees import data as trees
from spotdiff.tasks.trees import spec as neutral

FRAMEWORK = "tensorflow"


class TreeNet(tf.Module):
    """Digit embedding at the leaves, tanh([left; right] W_op + b_op) at internal nodes, a dense
    classifier on the root. Weights from the neutral (PyTorch-layout) arrays, kernels transposed."""

    def __init__(self, neutral_weights: dict[str, np.ndarray]):
        super().__init__()
        w = neutral_weights
        self.embedding = tf.Variable(w["embedding.weight"], name="embedding")  # (10, H)
        self.combine_kernel = tf.Variable(
            np.swapaxes(w["combine.weight"], 1, 2), name="combine_kernel"
        )  # (ops, 2H, H)
        self.combine_bias = tf.Variable(w["combine.bias"], name="combine_bias")  # (ops, H)
        self.fc_kernel = tf.Variable(w["fc.weight"].T.copy(), name="fc_kernel")  # (H, 2)
        self.fc_bias = tf.Variable(w["fc.bias"], name="fc_bias")

    def __call__(self, tokens, ops, structure: tuple):
        """Logits (1, 2) of one tree. Rows are unstacked once per tree: in eager mode a slice per
        node would cost more than the node's own arithmetic."""
        n_leaves, left, right = structure
        leaves = tf.unstack(tf.gather(self.embedding, tokens)[:, None, :])  # L x (1, H)
        kernels = tf.unstack(tf.gather(self.combine_kernel, ops))  # I x (2H, H), each node's op
        biases = tf.unstack(tf.gather(self.combine_bias, ops))  # I x (H,)

        def node(i: int):  # plain recursion from the root down
            if i < n_leaves:
                return leaves[i]
            k = i - n_leaves
            children = tf.concat([node(left[k]), node(right[k])], 1)  # (1, 2H)
            return tf.tanh(children @ kernels[k] + biases[k])  # (1, H)

        return node(n_leaves + len(left) - 1) @ self.fc_kernel + self.fc_bias  # (1, 2)


def build_model(params, data) -> TreeNet:
    return TreeNet(neutral.neutral_weights(data))


def cross_entropy(logits, labels):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def loss_fn(model, data, split: str, index: np.ndarray, mode: str, batch_size: int):
    """Mean cross-entropy over the trees of a batch, one recursion per tree."""
    # mode, batch_size: unused, one recursion per tree in every mode (JAX's linearised pads batches)
    logits = tf.concat(
        [model(t, o, s) for t, o, s in (tree_tensors(data, split, int(i)) for i in index)], 0
    )  # (B, 2)
    return cross_entropy(logits, tf.constant(data[f"labels_{split}"][index]))


def make_optimizer(model: TreeNet, params) -> keras.optimizers.Optimizer:
    # learning_rate, and epsilon when aligned
    optimizer = keras.optimizers.Adam(**native_kwargs("tensorflow", "adam", params.optimizer_hparams()))
    # Built now, not on the first step: variables created while tracing force a second trace.
    optimizer.build(model.trainable_variables)
    return optimizer


def tree_tensors(data, split: str, i: int):
    tokens, ops, left, right = trees.tree_at(data, split, i)
    return tf.constant(tokens), tf.constant(ops), (len(tokens), left, right)


def evaluate(model, data, mode: str, params) -> float:
    """Test accuracy by eager recursion in every mode (a tf.function would trace once more per test
    shape)."""
    n = len(data["labels_test"])
    predictions = [
        int(tf.argmax(model(t, o, s)[0])) for t, o, s in (tree_tensors(data, "test", i) for i in range(n))
    ]
    return float(np.mean(np.array(predictions) == data["labels_test"]))


def build_runner(model, optimizer, mode: str, data, batch_size: int, return_grads: bool = False):
    """step(index) -> loss, or (loss, dense gradients) with `return_grads` (the parity probe),
    and the traced function (None in eager mode)."""
    # batch_size: unused, a batch is as many trees as its index, one recursion each
    variables = model.trainable_variables

    if mode == "eager":

        def step(index):
            with tf.GradientTape() as tape:
                loss = loss_fn(model, data, "train", index, mode, batch_size)
            grads = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(grads, variables))
            return (loss, [tf.convert_to_tensor(g) for g in grads]) if return_grads else loss

        return step, None

    @tf.function
    def tree_grads(tokens, ops, label, structure):
        with tf.GradientTape() as tape:
            loss = cross_entropy(model(tokens, ops, structure), label[None])
        # Dense gradients: gathers give IndexedSlices, which cannot be summed across calls.
        return loss, [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]

    # The update has one fixed signature (the variables' shapes): one trace, not counted below.
    apply_update = tf.function(lambda grads: optimizer.apply_gradients(zip(grads, variables)))

    def step(index):
        losses, grads = [], []
        for i in index:
            tokens, ops, structure = tree_tensors(data, "train", int(i))
            loss, tree_grad = tree_grads(tokens, ops, tf.constant(data["labels_train"][i]), structure)
            losses.append(loss)
            grads.append(tree_grad)
        mean_grads = [tf.add_n(list(g)) / len(index) for g in zip(*grads)]
        apply_update(mean_grads)
        loss = tf.reduce_mean(tf.stack(losses))
        return (loss, mean_grads) if return_grads else loss

    return step, tree_grads


def to_neutral(model: TreeNet, values) -> dict[str, np.ndarray]:
    """The model's variables (or matching gradients) in the neutral (PyTorch) layout."""
    names = {
        id(model.embedding): "embedding.weight",
        id(model.combine_kernel): "combine.weight",
        id(model.combine_bias): "combine.bias",
        id(model.fc_kernel): "fc.weight",
        id(model.fc_bias): "fc.bias",
    }
    native = {names[id(v)]: np.asarray(value) for v, value in zip(model.trainable_variables, values)}
    return {
        **native,
        "combine.weight": np.swapaxes(native["combine.weight"], 1, 2),
        "fc.weight": native["fc.weight"].T.copy(),
    }


def parity_probe(params, data, cell_dir: Path, mode: str) -> str:
    """Shared weights, the first batch, one SGD step through this mode's train step: the loss,
    every gradient and the parameters after the step, in the neutral layout."""
    model = build_model(params, data)
    optimizer = keras.optimizers.SGD(learning_rate=params.lr)
    optimizer.build(model.trainable_variables)
    step, _ = build_runner(model, optimizer, mode, data, params.batch_size, return_grads=True)
    loss, grads = step(neutral.probe_batch(data, params.batch_size))
    return parity.save_probe(
        cell_dir, float(loss), to_neutral(model, grads), to_neutral(model, model.trainable_variables)
    )


def run(cell, params, data, cell_dir: Path):
    keras.utils.set_random_seed(cell.seed)
    model = build_model(params, data)
    first_batch_loss = float(
        loss_fn(
            model, data, "train", neutral.probe_batch(data, params.batch_size), cell.mode, params.batch_size
        )
    )
    step, traced = build_runner(model, make_optimizer(model, params), cell.mode, data, params.batch_size)
    epoch_s, train_loss = [], []
    for order in data["epoch_order"]:
        start = time.perf_counter()
        losses = [step(index) for index in neutral.epoch_batches(order, params.batch_size)]
        losses[-1].numpy()  # wait for the last step
        epoch_s.append(time.perf_counter() - start)
        train_loss += [float(loss) for loss in losses]
    compilations = int(traced.experimental_get_tracing_count()) if traced is not None else 0
    metrics, series = neutral.finish(
        params,
        data,
        FRAMEWORK,
        cell.mode,
        epoch_s,
        train_loss,
        compilations=compilations,
        test_accuracy=evaluate(model, data, cell.mode, params),
        first_batch_loss=first_batch_loss,
    )
    artifacts = {}
    if params.parity_probe:  # after the timed epochs, so that the first one stays cold
        artifacts["parity_probe"] = parity_probe(params, data, cell_dir, cell.mode)
    return metrics, series, artifacts


def record_steps(params, data, steps: int, dtype: str, align: dict, mode: str, variant: str) -> dict:
    """`spotdiff where`: `steps` Adam steps from the shared weights in `dtype` on the first batches
    of epoch 1, through this mode's train step: every tree's leaf embeddings, its internal node
    states in node order and the logits, the loss, every gradient and every parameter after the
    update, in the neutral layout. The nodes are computed one by one, eagerly, from the step's
    starting weights (children first, as the recursion reaches them).

    align {"adam_eps": "hat"}: Keras' Adam computes epsilon-hat already, said explicitly.
    align {"sparse_grads": "dense"}: the gathered gradients made dense before the update.
    align {"adam_eps_value": eps}: that eps passed."""
    from spotdiff.backends.tensorflow import optim
    from spotdiff.tasks.shared import honoured, where_adam

    # variant: unused, the one variant is Adam
    model = TreeNet({k: v.astype(dtype) for k, v in neutral.neutral_weights(data).items()})
    floatx = keras.config.floatx()
    keras.config.set_floatx(dtype)  # the optimiser's own variables (learning rate) take floatx
    try:
        # Keras casts Python floats through float32: betas as numpy scalars keep a float64 run's
        # bias correction in float64 (1 - 0.999 through float32 is 1.3e-5 off).
        betas = {name: getattr(np, dtype)(value) for name, value in (("beta_1", 0.9), ("beta_2", 0.999))}
        adam = native_kwargs("tensorflow", "adam", where_adam(params.optimizer_hparams(), align))
        optimizer = keras.optimizers.Adam(**adam, **betas)
        optimizer.build(model.trainable_variables)
    finally:
        keras.config.set_floatx(floatx)
    step, _ = build_runner(model, optim.aligned(optimizer, align), mode, data, params.batch_size,
                           return_grads=True)
    tensors: dict[str, np.ndarray] = {}
    for index, rows in enumerate(neutral.where_batches(data, params.batch_size, steps)):
        for name, value in _node_states(model, data, rows).items():
            tensors[f"{index}/forward/{name}"] = value
        loss, grads = step(rows)
        tensors[f"{index}/loss"] = loss.numpy()
        for key, value in to_neutral(model, grads).items():
            tensors[f"{index}/grad/{key}"] = value
        for key, value in to_neutral(model, model.trainable_variables).items():
            tensors[f"{index}/param/{key}"] = value
    return {"tensors": tensors, "layers": neutral.WHERE_LAYERS, "params": list(neutral.WHERE_PARAMS),
            "optimizer": "adam", "aligned": honoured(align)}


def _node_states(model: TreeNet, data, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Leaf embeddings (sum L, H), internal node states in node order (sum I, H), logits (B, 2)."""
    leaves, internal, logits = [], [], []
    for i in rows:
        tokens, ops, (n_leaves, left, right) = tree_tensors(data, "train", int(i))
        states = tf.unstack(tf.gather(model.embedding, tokens)[:, None, :])  # L x (1, H)
        kernels, biases = tf.gather(model.combine_kernel, ops), tf.gather(model.combine_bias, ops)
        for k in range(len(left)):  # node order: children always come first
            children = tf.concat([states[left[k]], states[right[k]]], 1)  # (1, 2H)
            states.append(tf.tanh(children @ kernels[k] + biases[k]))  # (1, H)
        leaves += states[:n_leaves]
        internal += states[n_leaves:]
        logits.append(states[-1] @ model.fc_kernel + model.fc_bias)  # (1, 2)
    return {name: tf.concat(values, 0).numpy()
            for name, values in (("embedding", leaves), ("combine", internal), ("fc", logits))}
