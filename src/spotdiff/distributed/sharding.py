"""Which images each data-parallel worker trains on (numpy only).

Every global batch of B images (the task's per-epoch order, cut into batches of B) is split into
N contiguous shards of B/N, one per worker, as PyTorch's DistributedSampler would hand them out if
it were fed one global batch at a time. The averaged gradient of N equal shards is the gradient of
the whole batch, so one step of N workers equals one step of one worker with batch B (up to
float32 summation order). The last, smaller batch of an epoch is dropped: shards of unequal size
would weight their images unequally.
"""

from __future__ import annotations

import numpy as np

from spotdiff.errors import UserError


def check_divisible(global_batch: int, workers: int) -> None:
    if global_batch % workers:
        raise UserError(
            f"batch_size {global_batch} does not split into {workers} equal shards; "
            f"use a multiple of {workers} (--set batch_size=...)"
        )


def steps_per_epoch(n_images: int, global_batch: int) -> int:
    return n_images // global_batch  # the last partial batch is dropped


def global_batches(order: np.ndarray, global_batch: int) -> np.ndarray:
    """One epoch's order (N_images,) -> (steps, B) index array, full batches only."""
    steps = steps_per_epoch(len(order), global_batch)
    return order[: steps * global_batch].reshape(steps, global_batch)


def shard(order: np.ndarray, global_batch: int, workers: int, rank: int) -> np.ndarray:
    """This worker's (steps, B/N) indices of one epoch: shard `rank` of every global batch."""
    check_divisible(global_batch, workers)
    local = global_batch // workers
    return global_batches(order, global_batch)[:, rank * local:(rank + 1) * local]
