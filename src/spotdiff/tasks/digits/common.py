"""Framework-neutral pieces every digits implementation shares (numpy only): the metrics, the
misclassified examples, and the parity-probe file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from spotdiff.measure import rate_spread, repeat_spread
from spotdiff.tasks import shared
from spotdiff.tasks.digits import models


def probe_batch(data: dict[str, np.ndarray], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The parity probe's batch: the first batch of epoch 1, the same for every framework."""
    index = shared.probe_batch(data, batch_size)
    return data["x_train"][index], data["y_train"][index]  # (B, 28, 28), (B,)


def save_probe(cell_dir: Path, logits: np.ndarray, grads: dict[str, np.ndarray], curve: list[float]) -> str:
    """Write the probe (logits (B, 10), neutral-layout gradients, first-epoch loss curve)."""
    path = Path(cell_dir) / "parity_probe.npz"
    np.savez(
        path, logits=logits, curve=np.asarray(curve, np.float64), **{f"grad:{k}": v for k, v in grads.items()}
    )
    return path.name


def finish(
    params,
    epoch_s: list[float],
    n_train: int,
    train_loss: list[float],
    test_loss: list[float],
    test_accuracy: list[float],
    predictions: np.ndarray,
    labels: np.ndarray,
    param_count: int,
    input_s: list[float] | None = None,
    step_s: list[float] | None = None,
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Metrics and series in the names results.json promises.

    `input_s` / `step_s`: per epoch, the time spent waiting for batches and in training steps
    (device synchronised), from `measure.timed_epoch` or `measure.split_input_wait`.
    """
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
    # the steady epochs are the repeats of a digits cell: their min–max is its spread
    metrics.update(repeat_spread("epoch_s", steady))
    metrics.update(rate_spread("steady_images_per_s", steady, n_train))
    metrics.update(input_metrics(epoch_s, input_s, step_s, n_train))
    series = {
        "train_loss": [float(v) for v in train_loss],
        "test_loss": [float(v) for v in test_loss],
        "test_accuracy": [float(v) for v in test_accuracy],
        "epoch_s": [float(v) for v in epoch_s],
        "misclassified_index": [int(i) for i in wrong],
        "misclassified_pred": [int(predictions[i]) for i in wrong],
    }
    if input_s is not None and step_s is not None:
        series["input_s"] = [float(v) for v in input_s]
        series["step_s"] = [float(v) for v in step_s]
    return metrics, series


def input_metrics(
    epoch_s: list[float], input_s: list[float] | None, step_s: list[float] | None, n_train: int
) -> dict[str, float | None]:
    """Steady-state input time vs step time (medians per epoch), the input's share of the epoch,
    and compute-only images/s (step time alone) to set beside end-to-end images/s."""
    if not input_s or not step_s or len(input_s) != len(epoch_s) or len(step_s) != len(epoch_s):
        return {"input_s": None, "step_s": None, "input_fraction": None, "compute_images_per_s": None}
    first = 1 if len(epoch_s) > 1 else 0  # the first epoch holds the compile: not steady
    steady_input, steady_step = input_s[first:], step_s[first:]
    step_total_s = sum(steady_step)
    return {
        "input_s": float(np.median(steady_input)),
        "step_s": float(np.median(steady_step)),
        "input_fraction": sum(steady_input) / sum(epoch_s[first:]),
        "compute_images_per_s": n_train * len(steady_step) / step_total_s if step_total_s > 0 else None,
        **rate_spread("compute_images_per_s", steady_step, n_train),
    }
