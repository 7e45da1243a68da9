"""The recursive tree network in JAX, two ways. `jit-per-structure`: the recursion is traced under
jax.jit with the tree's shape as a static argument, so every new shape compiles a new program.
`linearised`: each batch becomes fixed-size node arrays (leaves, then internal nodes with child
indices) run by lax.scan and vmapped over the batch, padded to power-of-two node buckets so the
compilations stay bounded. Compilations are counted by a trace-time side effect."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from spotdiff import parity
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.trees import data as trees
from spotdiff.tasks.trees import spec as neutral

FRAMEWORK = "jax"


def build_model(params, data) -> dict[str, jax.Array]:
    """Neutral weights in (in, out) layout: combine_kernel (ops, 2H, H), fc_kernel (H, 2)."""
    w = neutral.neutral_weights(data)
    return {"embedding": jnp.asarray(w["embedding.weight"]),
            "combine_kernel": jnp.asarray(np.swapaxes(w["combine.weight"], 1, 2)),
            "combine_bias": jnp.asarray(w["combine.bias"]),
            "fc_kernel": jnp.asarray(w["fc.weight"].T), "fc_bias": jnp.asarray(w["fc.bias"])}


def combine(model, op, left: jax.Array, right: jax.Array) -> jax.Array:
    return jnp.tanh(
        jnp.concatenate([left, right], -1) @ model["combine_kernel"][op] + model["combine_bias"][op]
    )  # (H,)


def recursive_logits(model, tokens: jax.Array, ops: jax.Array, structure: tuple) -> jax.Array:
    """The recursion over one tree; `structure` = (n_leaves, left, right) is Python data, so under
    jit it is unrolled into a program for this shape only."""
    n_leaves, left, right = structure
    leaves = model["embedding"][tokens]  # (L, H)

    def node(i: int) -> jax.Array:
        if i < n_leaves:
            return leaves[i]
        k = i - n_leaves
        return combine(model, ops[k], node(left[k]), node(right[k]))

    return node(n_leaves + len(left) - 1) @ model["fc_kernel"] + model["fc_bias"]  # (2,)


def linearised_logits(model, batch: dict[str, jax.Array]) -> jax.Array:
    """One tree's node arrays (see trees.linearise) -> logits (2,): node states start as the leaf
    embeddings; each scan step writes one internal node from its two children."""
    states = _linearised_states(model, batch)  # (N, H)
    return states[batch["root"]] @ model["fc_kernel"] + model["fc_bias"]


def _linearised_states(model, batch: dict[str, jax.Array]) -> jax.Array:
    """Every node's state (N, H) of one tree's node arrays after the scan."""
    states = model["embedding"][batch["leaf_tokens"]] * batch["is_leaf"][:, None]  # (N, H)

    def step(states, node):
        target, op, left, right = node
        return states.at[target].set(combine(model, op, states[left], states[right])), None

    nodes = (
        batch["step_target"],
        batch["step_op"],
        batch["step_left"],
        batch["step_right"],
    )  # each (N // 2,)
    states, _ = jax.lax.scan(step, states, nodes)
    return states


def tree_loss(model, tokens, ops, label, structure) -> jax.Array:
    logits = recursive_logits(model, tokens, ops, structure)
    return optax.softmax_cross_entropy_with_integer_labels(logits, label)


def linearised_loss(model, batch: dict[str, jax.Array]) -> jax.Array:
    """Mean cross-entropy over the real trees of a padded batch."""
    per_tree = {k: v for k, v in batch.items() if k not in ("labels", "weight")}
    logits = jax.vmap(linearised_logits, in_axes=(None, 0))(model, per_tree)  # (B, 2)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
    return jnp.sum(losses * batch["weight"]) / jnp.sum(batch["weight"])


def loss_fn(model, data, split: str, index: np.ndarray, mode: str, batch_size: int) -> jax.Array:
    """Mean cross-entropy over a batch, computed the mode's way (un-jitted)."""
    if mode == "linearised":
        return linearised_loss(model, batch_arrays(data, split, index, batch_size))
    losses = [tree_loss(model, *tree_arrays(data, split, int(i))) for i in index]
    return jnp.mean(jnp.stack(losses))


def make_optimizer(model, params) -> tuple[optax.GradientTransformation, optax.OptState]:
    """Adam for `model` and its initial state (optax keeps the state apart from the optimizer)."""
    optimizer = optax.adam(**native_kwargs("jax", "adam", params.optimizer_hparams()))  # lr, eps if aligned
    return optimizer, optimizer.init(model)


def tree_arrays(data, split: str, i: int):
    tokens, ops, left, right = trees.tree_at(data, split, i)
    label = jnp.asarray(data[f"labels_{split}"][i], jnp.int32)
    return jnp.asarray(tokens), jnp.asarray(ops), label, (len(tokens), left, right)


def batch_arrays(data, split: str, index: np.ndarray, batch_size: int) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v) for k, v in trees.linearise(data, split, index, batch_size).items()}


def evaluate(model, data, mode: str, params) -> float:
    """Test accuracy. jit-per-structure runs the recursion op by op here: jitting it would compile
    once more per test shape, for one call each."""
    n = len(data["labels_test"])
    if mode == "linearised":
        predict = jax.jit(lambda m, b: jax.vmap(linearised_logits, in_axes=(None, 0))(m, b).argmax(-1))
        correct = 0
        for index in neutral.epoch_batches(np.arange(n), params.batch_size):
            batch = batch_arrays(data, "test", index, params.batch_size)
            hits = (
                predict(model, {k: v for k, v in batch.items() if k not in ("labels", "weight")})
                == batch["labels"]
            )
            correct += int(jnp.sum(hits * batch["weight"]))
        return correct / n
    correct = sum(
        int(recursive_logits(model, t, o, s).argmax() == y)
        for t, o, y, s in (tree_arrays(data, "test", i) for i in range(n))
    )
    return correct / n


def build_runner(model, optimizer, mode: str, data, batch_size: int, return_grads: bool = False):
    """step(model, opt_state, index) -> (model, opt_state, loss), plus the gradients with
    `return_grads` (the parity probe), and the list of traces (one per compilation: jit compiles
    on each new static structure or input shape and traces its body once)."""
    # model: unused, the pure step takes the model each call
    traces: list[object] = []

    @jax.jit
    def update(model, opt_state, grads):
        updates, opt_state = optimizer.update(grads, opt_state, model)
        return optax.apply_updates(model, updates), opt_state

    if mode == "linearised":

        @jax.jit
        def batch_grad(model, batch):
            traces.append(batch["leaf_tokens"].shape)
            return jax.value_and_grad(linearised_loss)(model, batch)

        def step(model, opt_state, index):
            loss, grads = batch_grad(model, batch_arrays(data, "train", index, batch_size))
            return (*update(model, opt_state, grads), loss, *((grads,) if return_grads else ()))

        return step, traces

    @partial(jax.jit, static_argnames="structure")
    def tree_grad(model, tokens, ops, label, structure):
        traces.append(structure)
        return jax.value_and_grad(tree_loss)(model, tokens, ops, label, structure)

    def step(model, opt_state, index):
        batch = [tree_arrays(data, "train", int(i)) for i in index]
        losses, grads = zip(
            *(
                tree_grad(model, tokens, ops, label, structure=structure)
                for tokens, ops, label, structure in batch
            )
        )
        mean_grads = jax.tree.map(lambda *g: sum(g) / len(g), *grads)
        loss = jnp.mean(jnp.stack(losses))
        return (*update(model, opt_state, mean_grads), loss, *((mean_grads,) if return_grads else ()))

    return step, traces


def to_neutral(model, values) -> dict[str, np.ndarray]:
    """Parameters or gradients (build_model's layout) -> the neutral (PyTorch) layout."""
    # model: unused, `values` is a dict named like it (TensorFlow names its variables by the model)
    tree = jax.device_get(values)
    return {
        "embedding.weight": np.asarray(tree["embedding"]),
        "combine.weight": np.swapaxes(tree["combine_kernel"], 1, 2),
        "combine.bias": np.asarray(tree["combine_bias"]),
        "fc.weight": np.asarray(tree["fc_kernel"]).T.copy(),
        "fc.bias": np.asarray(tree["fc_bias"]),
    }


def parity_probe(params, data, cell_dir: Path, mode: str) -> str:
    """Shared weights, the first batch, one SGD step through this mode's train step: the loss,
    every gradient and the parameters after the step, in the neutral layout."""
    optimizer = optax.sgd(params.lr)
    model = build_model(params, data)
    step, _ = build_runner(model, optimizer, mode, data, params.batch_size, return_grads=True)
    model, _, loss, grads = step(model, optimizer.init(model), neutral.probe_batch(data, params.batch_size))
    return parity.save_probe(cell_dir, float(loss), to_neutral(model, grads), to_neutral(model, model))


def run(cell, params, data, cell_dir: Path):
    model = build_model(params, data)
    first_batch_loss = float(
        loss_fn(
            model, data, "train", neutral.probe_batch(data, params.batch_size), cell.mode, params.batch_size
        )
    )
    optimizer, opt_state = make_optimizer(model, params)
    step, traces = build_runner(model, optimizer, cell.mode, data, params.batch_size)
    epoch_s, train_loss = [], []
    for order in data["epoch_order"]:
        start = time.perf_counter()
        losses = []
        for index in neutral.epoch_batches(order, params.batch_size):
            model, opt_state, loss = step(model, opt_state, index)
            losses.append(loss)
        jax.block_until_ready(losses[-1])
        epoch_s.append(time.perf_counter() - start)
        train_loss += [float(loss) for loss in losses]
    metrics, series = neutral.finish(
        params,
        data,
        FRAMEWORK,
        cell.mode,
        epoch_s,
        train_loss,
        compilations=len(traces),
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
    update, in the neutral layout. The nodes are computed one by one from the step's starting
    weights (children first, as the recursion reaches them).

    align {"adam_eps": "hat"}: Adam written out as Keras computes it (Optax has no switch).
    align {"sparse_grads": "dense"}: the gradients are dense already, said explicitly.
    align {"adam_eps_value": eps}: that eps passed."""
    from spotdiff.backends.jax.optim import adam
    from spotdiff.tasks.shared import honoured, where_adam

    # variant: unused, the one variant is Adam
    jax.config.update("jax_enable_x64", True)  # float64 exists only with x64; float32 stays explicit
    model = {k: jnp.asarray(v, dtype) for k, v in build_model(params, data).items()}
    optimizer = adam(native_kwargs("jax", "adam", where_adam(params.optimizer_hparams(), align)), align)
    opt_state = optimizer.init(model)
    step, _ = build_runner(model, optimizer, mode, data, params.batch_size, return_grads=True)
    tensors: dict[str, np.ndarray] = {}
    for index, rows in enumerate(neutral.where_batches(data, params.batch_size, steps)):
        for name, value in _node_states(model, data, rows).items():
            tensors[f"{index}/forward/{name}"] = value
        model, opt_state, loss, grads = step(model, opt_state, rows)
        tensors[f"{index}/loss"] = np.asarray(loss)
        for key, value in to_neutral(model, grads).items():
            tensors[f"{index}/grad/{key}"] = value
        for key, value in to_neutral(model, model).items():
            tensors[f"{index}/param/{key}"] = value
    return {"tensors": tensors, "layers": neutral.WHERE_LAYERS, "params": list(neutral.WHERE_PARAMS),
            "optimizer": "adam", "aligned": honoured(align)}


def _node_states(model, data, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Leaf embeddings (sum L, H), internal node states in node order (sum I, H), logits (B, 2):
    the linearised scan's node states (one compile per bucket), whichever mode trains."""
    batch = batch_arrays(data, "train", rows, len(rows))
    per_tree = {k: v for k, v in batch.items() if k not in ("labels", "weight")}
    states, logits = jax.device_get(_states_and_logits(model, per_tree))  # (B, N, H), (B, 2)
    n_leaves = data["n_leaves_train"][rows]
    return {"embedding": np.concatenate([states[b, :n] for b, n in enumerate(n_leaves)]),
            "combine": np.concatenate([states[b, n:2 * n - 1] for b, n in enumerate(n_leaves)]),
            "fc": logits}


@jax.jit
def _states_and_logits(model, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    states = jax.vmap(_linearised_states, in_axes=(None, 0))(model, batch)  # (B, N, H)
    root = states[jnp.arange(states.shape[0]), batch["root"]]  # (B, H)
    return states, root @ model["fc_kernel"] + model["fc_bias"]
