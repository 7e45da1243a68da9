"""A `--workers N` cell, run inside the cell's worker process: the N-worker group, then a
one-worker reference group, both with the same engine and global batch; metrics and events.

Scaling efficiency is measured inside the cell, against the reference group: one worker on one
worker's share of the cores, same engine, same global batch B. Strong scaling: B stays fixed and
each of the N workers computes B/N of it on its own cores, so
efficiency = images/s(N workers) / (N x images/s(1 worker)); 1.0 is perfect scaling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from spotdiff.children import free_ports
from spotdiff.distributed import sharding
from spotdiff.distributed.launch import GroupResult, run_group, split_cores
from spotdiff.distributed.plan import GroupPlan
from spotdiff.measure import rate_spread, repeat_spread
from spotdiff.overrides import params_for


def group_plan(
    cell, cell_dir: Path, workers: int, cores: list[list[int]], name: str, dropout: bool = True
) -> GroupPlan:
    # CPU only for now: on a GPU every rank would take the first device (no per-rank assignment yet).
    return GroupPlan(
        task=cell.task,
        framework=cell.framework,
        params=cell.params,
        seed=cell.seed,
        device="cpu",
        workers=workers,
        cores=cores[:workers],
        ports=free_ports(workers),
        out_dir=str(cell_dir / name),
        dropout=dropout,
        task_source=cell.task_source,
    )


def throughput(group: GroupResult, images_per_epoch: int) -> tuple[float, list[float]]:
    """Global images/s over the steady epochs (the first, with its compile and warm-up, left out;
    one epoch only: that one), and the per-epoch time: the slowest rank's, since every step waits
    for all of them."""
    epoch_s = [max(r["epoch_s"][e] for r in group.ranks) for e in range(len(group.ranks[0]["epoch_s"]))]
    steady = epoch_s[1:] or epoch_s
    return images_per_epoch * len(steady) / sum(steady), epoch_s


def global_losses(group: GroupResult) -> list[float]:
    """Per-step loss of the global batch: the mean of the equal shards' losses."""
    if group.ranks[0]["loss_scope"] == "global":
        return group.ranks[0]["losses"]
    return np.mean([r["losses"] for r in group.ranks], axis=0).tolist()


def summarize(
    reference: GroupResult, group: GroupResult, params, workers: int
) -> tuple[dict[str, Any], dict[str, list]]:
    """Metrics and series of the cell (names as results.json promises them)."""
    images_per_epoch = group.ranks[0]["images_per_epoch"]
    ips, epoch_s = throughput(group, images_per_epoch)
    ips_1, _ = throughput(reference, images_per_epoch)
    chief = group.ranks[0]
    rss = [r["peak_rss_mb"] for r in group.ranks]
    metrics = {
        "workers": workers,
        "cores_per_worker": len(chief["cores"]),
        "engine": chief["engine"],
        "collective_backend": chief["backend"],
        "global_batch": params.batch_size,
        "images_per_epoch": images_per_epoch,
        "steady_images_per_s": ips,
        "reference_images_per_s": ips_1,
        "speedup": ips / ips_1,
        "scaling_efficiency": ips / (workers * ips_1),
        "first_epoch_s": epoch_s[0],
        "epoch_s": float(np.median(epoch_s[1:] or epoch_s)),
        "steady_from_first_epoch": len(epoch_s) == 1,
        **rate_spread("steady_images_per_s", epoch_s[1:], images_per_epoch),
        **repeat_spread("epoch_s", epoch_s[1:]),
        "startup_s": max(r["startup_s"] for r in group.ranks),
        "group_init_s": max(r["group_init_s"] for r in group.ranks),
        "reference_startup_s": reference.ranks[0]["startup_s"],
        "import_s": max(r["import_s"] for r in group.ranks),
        "peak_rss_mb": max(rss),
        "peak_rss_mb_per_worker_mean": float(np.mean(rss)),
        "reference_peak_rss_mb": reference.ranks[0]["peak_rss_mb"],
        "test_accuracy": chief["test_accuracy"],
        "test_loss": chief["test_loss"],
        "reference_test_accuracy": reference.ranks[0]["test_accuracy"],
        "param_count": chief["param_count"],
        "group_wall_s": group.wall_s,
        "reference_wall_s": reference.wall_s,
    }
    series = {
        "train_loss": global_losses(group),
        "reference_train_loss": global_losses(reference),
        "epoch_s": epoch_s,
        "worker_peak_rss_mb": rss,
        "worker_startup_s": [r["startup_s"] for r in group.ranks],
    }
    return metrics, series


def run_cell(cell, out, cell_dir: Path, cores: list[int]) -> None:
    """Run the N-worker group and the reference; emit environment, metrics, series, artifacts."""
    from spotdiff.tasks import get_spec

    spec = get_spec(cell.task)
    params = params_for(spec, cell.params)
    sharding.check_divisible(params.batch_size, cell.workers)
    shares = split_cores(cores, cell.workers)
    # The N-worker group first: a failing group fails the cell before the reference is spent.
    group = run_group(group_plan(cell, cell_dir, cell.workers, shares, f"workers{cell.workers}"))
    reference = run_group(group_plan(cell, cell_dir, 1, shares, "reference"))
    metrics, series = summarize(reference, group, params, cell.workers)
    metrics.update(spec.derive_metrics(metrics, series, params))
    chief = group.ranks[0]
    settings = {
        **chief["settings"],
        "engine": chief["engine"],
        "collective_backend": chief["backend"],
        "workers": cell.workers,
        "cpu_affinity_per_worker": [r["cores"] for r in group.ranks],
        "addresses": "127.0.0.1 (free ports)",
        "dtype": "float32",
    }
    if cell.device == "gpu":
        settings["device_note"] = (
            "--device gpu: data-parallel cells run on the CPU (no per-worker GPU assignment yet)"
        )
    out.emit("environment", versions=chief["versions"], settings=settings)
    out.emit("metrics", values=metrics)
    for name, values in series.items():
        out.emit("series", name=name, values=values)
    out.emit("artifact", name="weights", path=str((Path(group.plan.out_dir) / "weights.npz").resolve()))
