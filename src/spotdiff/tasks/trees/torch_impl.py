"""The recursive tree network in PyTorch, eager: a Python recursion builds each tree's graph as it
goes, and autograd differentiates whatever was built. Nothing is compiled, so nothing is counted."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spotdiff import parity
from spotdiff.backends.torch import env, weights
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.trees import data as trees
from spotdiff.tasks.trees import spec as neutral

FRAMEWORK = "torch"


class OpCombine(nn.Module):
    """One tanh layer per op: h = tanh(W_op [left; right] + b_op)."""

    def __init__(self, n_ops: int, hidden: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_ops, hidden, 2 * hidden))
        self.bias = nn.Parameter(torch.empty(n_ops, hidden))

    def forward(self, op: int, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.weight[op] @ torch.cat([left, right]) + self.bias[op])  # (H,)


class TreeNet(nn.Module):
    """Digit embedding at the leaves, OpCombine at internal nodes, a linear classifier on the root."""

    def __init__(self, hidden: int):
        super().__init__()
        self.embedding = nn.Embedding(trees.DIGITS, hidden)
        self.combine = OpCombine(len(trees.OPS), hidden)
        self.fc = nn.Linear(hidden, 2)

    def forward(
        self, tokens: torch.Tensor, ops: list[int], left: tuple[int, ...], right: tuple[int, ...]
    ) -> torch.Tensor:
        leaves = self.embedding(tokens)  # (L, H)
        n_leaves = len(tokens)

        def node(i: int) -> torch.Tensor:  # plain recursion from the root down
            if i < n_leaves:
                return leaves[i]
            k = i - n_leaves
            return self.combine(ops[k], node(left[k]), node(right[k]))

        return self.fc(node(n_leaves + len(ops) - 1))  # (2,)


def build_model(params, data) -> nn.Module:
    model = TreeNet(params.hidden)
    weights.load_neutral(model, neutral.neutral_weights(data))
    return model.to(env.device())


def loss_fn(
    model: nn.Module, data, split: str, index: np.ndarray, mode: str, batch_size: int
) -> torch.Tensor:
    """Mean cross-entropy over the trees of a batch, one recursion per tree."""
    # mode, batch_size: unused, one recursion per tree in every mode (JAX's linearised pads batches)
    logits = torch.stack(
        [
            model(torch.from_numpy(tokens).long().to(env.device()), ops.tolist(), left, right)
            for tokens, ops, left, right in (trees.tree_at(data, split, int(i)) for i in index)
        ]
    )  # (B, 2)
    return F.cross_entropy(logits, torch.from_numpy(data[f"labels_{split}"][index]).to(env.device()))


def make_optimizer(model: nn.Module, params) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), **native_kwargs("torch", "adam", params.optimizer_hparams()))


def evaluate(model, data, mode: str, params) -> float:
    # mode: unused, the one eager recursion serves every mode
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(len(data["labels_test"])):
            tokens, ops, left, right = trees.tree_at(data, "test", i)
            logits = model(torch.from_numpy(tokens).long().to(env.device()), ops.tolist(), left, right)
            correct += int(logits.argmax().item() == data["labels_test"][i])
    return correct / len(data["labels_test"])


def build_runner(model, optimizer, mode: str, data, batch_size: int, return_grads: bool = False):
    """One training step on a batch of tree indices; returns the loss tensor (not fetched)."""

    # mode, batch_size, return_grads: unused, one eager recursion per tree; each .grad keeps its gradient
    def step(index: np.ndarray) -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(model, data, "train", index, mode, batch_size)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def parity_probe(params, data, cell_dir: Path, mode: str) -> str:
    """Shared weights, the first batch, one SGD step through this mode's train step: the loss,
    every gradient and the parameters after the step, in the neutral layout."""
    model = build_model(params, data)
    optimizer = torch.optim.SGD(model.parameters(), lr=params.lr)
    step = build_runner(model, optimizer, mode, data, params.batch_size)
    loss = step(neutral.probe_batch(data, params.batch_size))
    named = dict(model.named_parameters())
    return parity.save_probe(
        cell_dir,
        loss.item(),
        weights.to_neutral({n: p.grad for n, p in named.items()}),
        weights.to_neutral(named),
    )


def run(cell, params, data, cell_dir: Path):
    torch.manual_seed(cell.seed)
    model = build_model(params, data)
    with torch.no_grad():
        first_batch_loss = loss_fn(
            model, data, "train", neutral.probe_batch(data, params.batch_size), cell.mode, params.batch_size
        ).item()
    step = build_runner(model, make_optimizer(model, params), cell.mode, data, params.batch_size)
    epoch_s, train_loss = [], []
    for order in data["epoch_order"]:
        model.train()
        start = time.perf_counter()
        losses = [step(index) for index in neutral.epoch_batches(order, params.batch_size)]
        env.sync()
        epoch_s.append(time.perf_counter() - start)
        train_loss += torch.stack(losses).tolist()
    metrics, series = neutral.finish(
        params,
        data,
        FRAMEWORK,
        cell.mode,
        epoch_s,
        train_loss,
        compilations=0,
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

    align {"adam_eps": "hat"}: Adam written out as Keras computes it (torch.optim has no switch).
    align {"sparse_grads": "dense"}: the gradients are dense already, said explicitly.
    align {"adam_eps_value": eps}: that eps passed."""
    from spotdiff.backends.torch.optim import aligned_adam
    from spotdiff.tasks.shared import honoured, where_adam

    # variant: unused, the one variant is Adam
    model = build_model(params, data).to(device="cpu", dtype=getattr(torch, dtype))
    adam = native_kwargs("torch", "adam", where_adam(params.optimizer_hparams(), align))
    step = build_runner(model, aligned_adam(torch.optim.Adam(model.parameters(), **adam), align), mode, data,
                        params.batch_size)
    tensors: dict[str, np.ndarray] = {}
    for index, rows in enumerate(neutral.where_batches(data, params.batch_size, steps)):
        with torch.no_grad():
            for name, value in _node_states(model, data, rows).items():
                tensors[f"{index}/forward/{name}"] = value.numpy().copy()
        tensors[f"{index}/loss"] = step(rows).numpy().copy()
        named = dict(model.named_parameters())
        for key, value in weights.to_neutral({n: p.grad for n, p in named.items()}).items():
            tensors[f"{index}/grad/{key}"] = value
        for key, value in weights.to_neutral(named).items():
            tensors[f"{index}/param/{key}"] = value
    return {"tensors": tensors, "layers": neutral.WHERE_LAYERS, "params": list(neutral.WHERE_PARAMS),
            "optimizer": "adam", "aligned": honoured(align)}


def _node_states(model: TreeNet, data, rows: np.ndarray) -> dict[str, torch.Tensor]:
    """Leaf embeddings (sum L, H), internal node states in node order (sum I, H), logits (B, 2)."""
    leaves, internal, logits = [], [], []
    for i in rows:
        tokens, ops, left, right = trees.tree_at(data, "train", int(i))
        states = list(model.embedding(torch.from_numpy(tokens).long()))  # L x (H,)
        for k, op in enumerate(ops.tolist()):  # node order: children always come first
            states.append(model.combine(op, states[left[k]], states[right[k]]))
        leaves += states[: len(tokens)]
        internal += states[len(tokens):]
        logits.append(model.fc(states[-1]))
    return {"embedding": torch.stack(leaves), "combine": torch.stack(internal), "fc": torch.stack(logits)}
