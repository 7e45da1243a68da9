"""Framework-neutral pieces every digits implementation shares (numpy only): the metrics, the
misclassified examples, and the parity-probe file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from spotdiff.tasks.digits import models


def probe_batch(data: dict[str, np.ndarray], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The parity probe's batch: the first batch of epoch 1, the same for every framework."""
    index = data["epoch_order"][0][:batch_size]
    return data["x_train"][index], data["y_train"][index]  # (B, 28, 28), (B,)


def save_probe(cell_dir: Path, logits: np.ndarray, grads: dict[str, np.ndarray], curve: list[float]) -> str:
    """Write the probe (logits (B, 10), neutral-layout gradients, first-epoch loss curve)."""
    path = Path(cell_dir) / "parity_probe.npz"
    np.savez(path, logits=logits, curve=np.asarray(curve, np.float64), **{f"grad:{k}": v for k, v in grads.items()})
    return path.name


def finish(
    params, epoch_s: list[float], n_train: int, train_loss: list[float], test_loss: list[float],
    test_accuracy: list[float], predictions: np.ndarray, labels: np.ndarray, param_count: int,
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Metrics and series in the names results.json promises."""
    steady = epoch_s[1:] or epoch_s  # one epoch: no steady state apart from the first
    wrong = np.flatnonzero(predictions != labels)[: params.misclassified]
    metrics = {
        "test_accuracy": test_accuracy[-1],
        "test_loss": test_loss[-1],
        "first_epoch_s": epoch_s[0],
        "epoch_s": float(np.median(steady)),
        "steady_images_per_s": n_train * len(steady) / sum(steady),
        "steady_from_first_epoch": len(epoch_s) == 1,
        "param_count": int(param_count),
        "forward_flops_per_image": models.forward_flops_per_image(params.model),
    }
    series = {
        "train_loss": [float(v) for v in train_loss],
        "test_loss": [float(v) for v in test_loss],
        "test_accuracy": [float(v) for v in test_accuracy],
        "epoch_s": [float(v) for v in epoch_s],
        "misclassified_index": [int(i) for i in wrong],
        "misclassified_pred": [int(predictions[i]) for i in wrong],
    }
    return metrics, series
