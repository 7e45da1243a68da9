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
