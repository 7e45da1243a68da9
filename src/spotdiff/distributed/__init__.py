"""Data-parallel training (`spotdiff run digits --workers N`), framework-neutral plumbing.

A `--workers N` cell's worker process (spotdiff.worker) becomes a launcher: `cell.run_cell`
starts a one-worker reference group and then the N-worker group (`launch.run_group`), each rank a
`python -m spotdiff.distributed.rank` process pinned to its share of the cell's cores, talking over
free ports on 127.0.0.1. The framework-specific engines live beside each task's implementations
(`tasks/<task>/<prefix>_dp_impl.py`); a task declares support with `data_parallel_modes` on its
TaskSpec: framework -> the modes its engine runs.
"""

from __future__ import annotations

import os
from typing import Any

from spotdiff.errors import UserError


def data_parallel_modes(task: str) -> dict[str, tuple[str, ...]]:
    """framework -> modes that `--workers N > 1` runs for `task` (empty: no data-parallel support)."""
    from spotdiff.tasks import get_spec

    return dict(get_spec(task).data_parallel_modes)


def check_workers(tasks: list[str], workers: int, threads: int, overrides: dict[str, Any]) -> None:
    """UserError (one line) unless every task supports `workers` data-parallel workers here.

    Workers never share a core: N must not exceed the cell's cores (--threads, at most the cores
    this process may use). Oversubscribed workers would measure time-slicing, not scaling. The
    global batch must split into N equal shards (see sharding).
    """
    if workers == 1:
        return
    unsupported = [t for t in tasks if not data_parallel_modes(t)]
    if unsupported:
        from spotdiff.tasks import task_names

        able = [t for t in task_names() if data_parallel_modes(t)]
        raise UserError(
            f"--workers {workers}: task {', '.join(unsupported)} has no data-parallel training; "
            f"tasks that do: {', '.join(able) or 'none'} (or leave --workers at 1)"
        )
    cores = min(threads, len(os.sched_getaffinity(0)))
    if workers > cores:
        raise UserError(
            f"--workers {workers} needs {workers} cores, one per worker, but cells get {cores} "
            f"(--threads {threads}, {len(os.sched_getaffinity(0))} available); use --workers {cores} or fewer"
        )
    from spotdiff.distributed.sharding import check_divisible
    from spotdiff.overrides import task_params

    for task in tasks:
        batch_size = getattr(task_params(task, overrides), "batch_size", None)
        if batch_size is not None:
            check_divisible(batch_size, workers)
