"""Neutral helpers every task with shared weights and a seeded batch order uses (numpy only).

A task's `build_data` stores its initial weights as `w:<name>` arrays and its batch order as
`epoch_order` (E, N); these three functions read them the same way for every task and framework.
"""

from __future__ import annotations

import numpy as np


def neutral_weights(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The shared initial weights (neutral layout), by name."""
    return {k[2:]: v for k, v in data.items() if k.startswith("w:")}


def epoch_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Index arrays of one epoch's batches (the last one may be smaller)."""
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def probe_batch(data: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    """Indices of the first batch of epoch 1: every framework's parity probe starts on it."""
    return data["epoch_order"][0][:batch_size]


def where_batches(data: dict[str, np.ndarray], batch_size: int, steps: int) -> list[np.ndarray]:
    """Indices of the batches `spotdiff where` records: the first `steps` of epoch 1."""
    return epoch_batches(data["epoch_order"][0], batch_size)[:steps]


# The `where` alignments (locate/causes.py) an Adam-trained task's record_steps honours.
ADAM_ALIGNMENTS = ("adam_eps", "adam_eps_value", "sparse_grads")


def where_adam(optimizer_hparams: dict[str, float], align: dict) -> dict[str, float]:
    """The task's neutral Adam settings, with align {"adam_eps_value": eps} passing that eps."""
    if "adam_eps_value" in align:
        return {**optimizer_hparams, "eps": align["adam_eps_value"]}
    return dict(optimizer_hparams)


def honoured(align: dict, keys: tuple[str, ...] = ADAM_ALIGNMENTS) -> list[str]:
    """The alignment keys of `align` a record_steps understands (its answer's "aligned")."""
    return [key for key in keys if key in align]
