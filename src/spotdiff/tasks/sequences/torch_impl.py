"""The sequence classifier in PyTorch, eager: nn.LSTM on padded batches, or on a PackedSequence
that skips every padded step."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from spotdiff import parity
from spotdiff.backends.torch import env, weights
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.sequences import spec as neutral

FRAMEWORK = "torch"


class SequenceClassifier(nn.Module):
    """Embedding -> LSTM -> linear on the state after each sequence's last real token."""

    def __init__(self, vocab: int, embed: int, hidden: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 2)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, packed: bool) -> torch.Tensor:
        x = self.embedding(tokens)  # (B, T, E)
        if packed:
            sequence = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            _, (h_n, _) = self.lstm(sequence)  # h_n (1, B, H): each sequence's own last step
            last = h_n[-1]
        else:
            outputs, _ = self.lstm(x)  # (B, T, H)
            last = outputs[torch.arange(len(lengths)), lengths - 1]  # (B, H)
        return self.fc(last)  # (B, 2)


def build_model(params, data, mode: str) -> nn.Module:
    # mode: unused, the forward pass packs or masks (Keras builds its masking into the model)
    model = SequenceClassifier(params.vocab, params.embed, params.hidden)
    weights.load_neutral(model, neutral.neutral_weights(data))
    # One trainable LSTM bias, as in Keras and JAX: nn.LSTM adds bias_ih and bias_hh, so training
    # both would move their sum twice as far per step as the others' single bias.
    with torch.no_grad():
        model.lstm.bias_ih_l0 += model.lstm.bias_hh_l0
        model.lstm.bias_hh_l0.zero_()
    model.lstm.bias_hh_l0.requires_grad_(False)
    return model.to(env.device())


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def make_optimizer(model: nn.Module, params) -> torch.optim.Optimizer:
    adam = native_kwargs("torch", "adam", params.optimizer_hparams())  # lr, and eps when aligned
    return torch.optim.Adam(model.parameters(), **adam)  # skips the frozen bias_hh


def batch_tensors(data, split: str, index: np.ndarray, mode: str, max_len: int):
    """(tokens (B, T), lengths (B,), labels (B,)) padded to the width the strategy computes."""
    lengths = data[f"len_{split}"][index]
    width = neutral.padded_width(FRAMEWORK, mode, lengths, max_len)
    tokens = torch.from_numpy(data[f"x_{split}"][index, :width]).long()
    return (
        tokens.to(env.device()),
        torch.from_numpy(lengths),
        torch.from_numpy(data[f"y_{split}"][index]).to(env.device()),
    )


def evaluate(model, data, mode: str, params) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for index in neutral.epoch_batches(np.arange(len(data["y_test"])), 256):
            tokens, lengths, labels = batch_tensors(data, "test", index, mode, params.max_len)
            correct += (model(tokens, lengths, mode == "packed").argmax(1) == labels).sum().item()
    return correct / len(data["y_test"])


def build_runner(model, optimizer, mode: str, max_len: int, return_grads: bool = False):
    """One training step on a batch; returns the loss tensor (not fetched)."""

    # max_len, return_grads: unused, eager needs no fixed signature and each .grad keeps its gradient
    def step(tokens, lengths, labels):
        optimizer.zero_grad()
        loss = loss_fn(model(tokens, lengths, mode == "packed"), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def parity_probe(params, data, cell_dir: Path, mode: str) -> str:
    """Shared weights, the first batch, one SGD step through this mode's train step: the loss,
    every gradient and the parameters after the step, in the probe's (in, out) layout."""
    model = build_model(params, data, mode)
    step = build_runner(model, torch.optim.SGD(model.parameters(), lr=params.lr), mode, params.max_len)
    probe = batch_tensors(data, "train", neutral.probe_batch(data, params.batch_size), mode, params.max_len)
    loss = step(*probe)
    named = dict(model.named_parameters())
    grads = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in named.items()}
    return parity.save_probe(
        cell_dir,
        loss.item(),
        neutral.in_out_layout(weights.to_neutral(grads)),
        neutral.in_out_layout(weights.to_neutral(named)),
    )


def run(cell, params, data, cell_dir: Path):
    torch.manual_seed(cell.seed)
    model = build_model(params, data, cell.mode)
    with torch.no_grad():
        probe = batch_tensors(
            data, "train", neutral.probe_batch(data, params.batch_size), cell.mode, params.max_len
        )
        first_batch_loss = loss_fn(model(*probe[:2], cell.mode == "packed"), probe[2]).item()
    step = build_runner(model, make_optimizer(model, params), cell.mode, params.max_len)
    epoch_s, train_loss = [], []
    for order in data["epoch_order"]:
        model.train()
        start = time.perf_counter()
        losses = [
            step(*batch_tensors(data, "train", index, cell.mode, params.max_len))
            for index in neutral.epoch_batches(order, params.batch_size)
        ]
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
    of epoch 1, through this mode's train step: every layer's output (the embedding and the LSTM's
    outputs (B, T, H) cut to the batch's longest sequence, the LSTM's outputs zero past each end;
    the state at the last real token (B, H); the logits), the loss, every gradient and every
    parameter after the update, in the probe's (in, out) layout. The layers are called one by one
    from the step's starting weights, the packed strategy through pad_packed_sequence.

    align {"adam_eps": "hat"}: Adam written out as Keras computes it (torch.optim has no switch).
    align {"sparse_grads": "dense"}: the gradients are dense already, said explicitly.
    align {"adam_eps_value": eps}: that eps passed."""
    from spotdiff.backends.torch.optim import aligned_adam
    from spotdiff.tasks.shared import honoured, where_adam

    # variant: unused, the one variant is Adam
    real = getattr(torch, dtype)
    model = build_model(params, data, mode).to(device="cpu", dtype=real)
    adam = native_kwargs("torch", "adam", where_adam(params.optimizer_hparams(), align))
    optimizer = aligned_adam(torch.optim.Adam(model.parameters(), **adam), align)
    step = build_runner(model, optimizer, mode, params.max_len)
    tensors: dict[str, np.ndarray] = {}
    for index, rows in enumerate(neutral.where_batches(data, params.batch_size, steps)):
        tokens, lengths, labels = batch_tensors(data, "train", rows, mode, params.max_len)
        with torch.no_grad():
            embedded = model.embedding(tokens)  # (B, W, E)
            if mode == "packed":
                sequence = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
                outputs = pad_packed_sequence(model.lstm(sequence)[0], batch_first=True)[0]  # (B, T, H)
            else:
                outputs = model.lstm(embedded)[0]  # (B, W, H)
            last = outputs[torch.arange(len(lengths)), lengths - 1]  # (B, H)
            outputs = {"embedding": embedded[:, : int(lengths.max())],
                       "lstm": neutral.where_lstm_outputs(outputs.numpy(), lengths.numpy()),
                       "last": last, "fc": model.fc(last)}
        for name, value in outputs.items():
            tensors[f"{index}/forward/{name}"] = np.array(value)
        tensors[f"{index}/loss"] = step(tokens, lengths, labels).numpy().copy()
        named = dict(model.named_parameters())
        grads = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in named.items()}
        for key, value in neutral.where_named(neutral.in_out_layout(weights.to_neutral(grads))).items():
            tensors[f"{index}/grad/{key}"] = value
        for key, value in neutral.where_named(neutral.in_out_layout(weights.to_neutral(named))).items():
            tensors[f"{index}/param/{key}"] = value
    return {"tensors": tensors, "layers": neutral.WHERE_LAYERS, "params": list(neutral.WHERE_PARAMS.values()),
            "optimizer": "adam", "aligned": honoured(align)}

