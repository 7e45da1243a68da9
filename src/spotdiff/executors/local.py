"""Local executor: one child process per cell, one at a time, so timed cells never share the CPU.

The parent never imports a framework. It starts `python -m spotdiff.worker` through
`spotdiff.children` (pinned to the cell's threads before anything is imported), enforces the cell
timeout, samples the child's memory, turns crashes and signals into failed cells, and rewrites
results.json after every cell so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from spotdiff import children
from spotdiff import frameworks as fw
from spotdiff.events import read_events
from spotdiff.experiment import Cell


@dataclass
class CellOutcome:
    """What the runner learned about one cell; `as_record()` is its results.json entry."""

    cell: Cell
    status: str  # ok | failed | skipped
    error: str | None = None
    stderr_tail: str | None = None
    wall_s: float = 0.0
    environment: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        c = self.cell
        return {
            "id": c.id, "task": c.task, "framework": c.framework, "mode": c.mode,
            "variant": c.variant, "seed": c.seed, "precision": c.precision,
            "status": self.status, "error": self.error,
            "stderr_tail": self.stderr_tail, "wall_s": self.wall_s,
            "environment": self.environment, "metrics": self.metrics, "series": self.series,
            "artifacts": self.artifacts,
        }


def _rss_mb(process: psutil.Process) -> float:
    try:
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20
    except psutil.Error:
        return 0.0


def skip_reason(cell: Cell) -> str | None:
    """Why a cell cannot run here (checked without importing any framework), or None."""
    from spotdiff.tasks import get_spec, has_impl, impl_module

    framework = fw.FRAMEWORKS[cell.framework]
    if fw.installed_version(cell.framework) is None:
        return f"{framework.label} is not installed (pip install 'spotdiff[{cell.framework}]')"
    if not has_impl(cell.task, framework.impl_prefix):
        module = impl_module(cell.task, framework.impl_prefix)
        return f"task {cell.task} has no {framework.label} implementation ({module})"
    supported = get_spec(cell.task).precisions
    if cell.precision not in supported:
        return (
            f"task {cell.task} does not support --precision {cell.precision} (it runs {', '.join(supported)})"
        )
    return None


def compile_cache_env(cell_dir: Path) -> dict[str, str]:
    """Compile caches start empty in every cell (torch.compile keeps an on-disk cache between
    runs; JAX's persistent cache, off by default, stays off even where the user's environment
    turns it on), so first-step times are cold for everyone."""
    return {
        "TORCHINDUCTOR_CACHE_DIR": str(cell_dir / "compile-cache"),
        "TRITON_CACHE_DIR": str(cell_dir / "compile-cache" / "triton"),
        "JAX_ENABLE_COMPILATION_CACHE": "false",
    }


def run_cell(cell: Cell, cell_dir: Path, timeout_s: float) -> CellOutcome:
    """Run one cell in a child process and collect its outcome; never raises for child failures."""
    reason = skip_reason(cell)
    if reason:
        return CellOutcome(cell, "skipped", error=reason)
    cell_dir.mkdir(parents=True, exist_ok=True)
    cell_json, events_path = cell_dir / "cell.json", cell_dir / "events.jsonl"
    stderr_path = cell_dir / "stderr.log"
    cell_json.write_text(cell.model_dump_json(indent=1), encoding="utf-8")
    events_path.unlink(missing_ok=True)
    start = time.perf_counter()
    sampled_peak_mb = 0.0
    with open(cell_dir / "stdout.log", "wb") as stdout, open(stderr_path, "wb") as stderr:
        proc = children.start(
            "spotdiff.worker",
            [cell_json, events_path],
            pin=children.Pin.first(cell.threads),
            env=compile_cache_env(cell_dir),
            stdout=stdout,
            stderr=stderr,
        )
        process = psutil.Process(proc.pid)

        def sample_memory() -> bool:
            nonlocal sampled_peak_mb
            sampled_peak_mb = max(sampled_peak_mb, _rss_mb(process))
            return False

        timed_out = children.watch(proc, timeout_s, on_poll=sample_memory)
    shutil.rmtree(cell_dir / "compile-cache", ignore_errors=True)  # cold caches are not kept
    outcome = CellOutcome(cell, "failed", wall_s=time.perf_counter() - start)
    for event in read_events(events_path):
        kind = event["event"]
        if kind == "environment":
            outcome.environment = {"versions": event["versions"], "settings": event["settings"]}
        elif kind == "metrics":
            outcome.metrics.update(event["values"])
        elif kind == "series":
            outcome.series[event["name"]] = event["values"]
        elif kind == "artifact":
            outcome.artifacts[event["name"]] = event["path"]
        elif kind == "error":
            outcome.error = f"{event['type']}: {event['message']}"
        elif kind == "done" and proc.returncode == 0:
            outcome.status = "ok"
    if outcome.status != "ok":
        if timed_out:
            outcome.error = f"timed out after {timeout_s:g} s (--cell-timeout)"
        elif children.signal_name(proc.returncode):
            outcome.error = children.death_reason(proc.returncode, what="worker")
        elif outcome.error is None:
            outcome.error = f"worker exited with code {proc.returncode} without a result"
        outcome.stderr_tail = children.stderr_tail(stderr_path)
        outcome.metrics.setdefault("peak_rss_mb", sampled_peak_mb or None)
    return outcome


def run_cells(
    cells: list[Cell],
    run_dir: Path,
    timeout_s: float,
    on_start: Callable[[Cell], None] = lambda cell: None,
    on_done: Callable[[CellOutcome], None] = lambda outcome: None,
) -> list[CellOutcome]:
    """Run cells one after another; KeyboardInterrupt propagates after the current child is killed."""
    outcomes = []
    for cell in cells:
        on_start(cell)
        outcome = run_cell(cell, run_dir / "cells" / cell.id, timeout_s)
        outcomes.append(outcome)
        on_done(outcome)
    return outcomes


class LocalExecutor:
    """One child process per cell on this machine, one cell at a time."""

    def run_cells(self, cells, run_dir, timeout_s, on_start, on_done):
        return run_cells(cells, run_dir, timeout_s, on_start=on_start, on_done=on_done)

    def describe(self) -> dict[str, Any]:
        return {"name": "local"}

    def close(self) -> None:
        pass
