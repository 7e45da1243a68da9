"""What `spotdiff run` shows while it runs: cells done / total, the cell now running, the time
left, and each cell's result line as it lands.

On a terminal: a Rich Live display (a bar, the running cell, an estimate of the time left) with
each finished cell's line printed above it. Anywhere else (CI logs, pipes): one plain line per
finished cell and a closing summary, no control codes.

The time left comes from the history store where it has seen a cell before (its median wall time
on this machine under the same settings, spotdiff.record.store.past_wall_s); cells it has not seen
count as the mean of this run's finished cells. Until one of those exists the estimate is unknown.
"""

from __future__ import annotations

import socket
import statistics
import time
from typing import Any, Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from spotdiff.errors import UserError
from spotdiff.experiment import Cell
from spotdiff.record import store
from spotdiff.report.terminal import fmt
from spotdiff.tasks import get_spec


class Estimator:
    """Expected seconds of every cell of a run, and so the time left at any moment."""

    def __init__(self, cells: list[Cell], past_s: dict[str, float],
                 fingerprint: Callable[[Cell], str], clock: Callable[[], float] = time.monotonic):
        self.cells, self.clock = cells, clock
        self.past_s = {cell.id: past_s[fingerprint(cell)] for cell in cells if fingerprint(cell) in past_s}
        self.finished_s: dict[str, float] = {}  # ok and failed cells (a skipped one costs nothing)
        self.done: set[str] = set()
        self.running: Cell | None = None
        self.running_since = 0.0

    @classmethod
    def from_store(cls, cells: list[Cell], experiment: dict[str, Any]) -> Estimator:
        """An estimator from the history store; a store that cannot be read only costs the history."""
        def fingerprint(cell: Cell) -> str:
            return store.cell_fingerprint(cell.id, experiment)

        try:
            past = store.past_wall_s(sorted({fingerprint(c) for c in cells}), socket.gethostname())
        except store.StoreError:  # the run itself says so once, when it indexes
            past = {}
        return cls(cells, past, fingerprint)

    def start(self, cell: Cell) -> None:
        self.running, self.running_since = cell, self.clock()

    def finish(self, cell: Cell, status: str, wall_s: float) -> None:
        self.done.add(cell.id)
        if status != "skipped":
            self.finished_s[cell.id] = wall_s
        if self.running is not None and self.running.id == cell.id:
            self.running = None

    def expected_s(self, cell: Cell) -> float | None:
        if cell.id in self.past_s:
            return self.past_s[cell.id]
        return statistics.fmean(self.finished_s.values()) if self.finished_s else None

    def remaining_s(self) -> float | None:
        """Seconds left: every cell not finished, less what the running one has already taken."""
        total = 0.0
        for cell in self.cells:
            if cell.id in self.done:
                continue
            expected = self.expected_s(cell)
            if expected is None:
                return None
            if self.running is not None and cell.id == self.running.id:
                expected = max(expected - (self.clock() - self.running_since), 0.0)
            total += expected
        return total


def duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds} s"


def cell_line(position: int, total: int, outcome: Any) -> str:
    """`[3/19] exponent tensorflow-graph manual: ok (4.2 s) steady 119 µs/step (112–130, 3 repeats)`."""
    cell, metrics = outcome.cell, outcome.metrics
    head = f"[{position}/{total}] {cell.task} {cell.framework}-{cell.mode} {cell.variant}: {outcome.status}"
    detail = _detail(outcome.status, cell.task, metrics, outcome.error)
    return f"{head} ({outcome.wall_s:.1f} s) {detail}".rstrip()


def _detail(status: str, task: str, metrics: dict[str, Any], error: str | None) -> str:
    if status != "ok":
        return error or ""
    if "steady_step_us" in metrics:
        repeats = metrics.get("repeats")
        low, high = metrics.get("steady_step_us_min"), metrics.get("steady_step_us_max")
        spread = (f" ({low:.1f}–{high:.1f}, {repeats} repeat{'s' if repeats != 1 else ''})"
                  if repeats and low is not None and high is not None else "")
        return (f"steady {metrics['steady_step_us']:.1f} µs/step{spread}, "
                f"first step {metrics.get('first_step_s', 0):.3f} s")
    try:
        headline = get_spec(task).headline_metrics
    except UserError:
        headline = ()
    shown = [(label, metrics[key]) for key, label, *_ in headline if key in metrics][:2]
    return ", ".join(f"{label} {fmt(value)}" for label, value in shown)


class EtaColumn(ProgressColumn):
    """The estimator's time left, recomputed at every refresh so it counts down between cells."""

    def __init__(self, estimator: Estimator):
        super().__init__()
        self.estimator = estimator

    def render(self, task: Any) -> Text:
        left = self.estimator.remaining_s()
        return Text("left: estimating" if left is None else f"about {duration(left)} left")


class RunProgress:
    """`on_start` / `on_done` callbacks for spotdiff.orchestrate.run_experiment; use as a context
    manager so a live display is taken down whatever happens (Ctrl-C included)."""

    def __init__(self, cells: list[Cell], console: Console, estimator: Estimator,
                 live: bool | None = None):
        self.cells, self.console, self.estimator = cells, console, estimator
        self.live = console.is_terminal if live is None else live
        self.position = 0
        self.counts: dict[str, int] = {}
        self.started = time.monotonic()
        self.progress: Progress | None = None
        self.task_id: Any = None

    def __enter__(self) -> RunProgress:
        self.started = time.monotonic()
        if self.live:
            self.progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), EtaColumn(self.estimator), console=self.console, transient=True,
            )
            self.progress.start()
            self.task_id = self.progress.add_task("starting", total=len(self.cells))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def on_start(self, cell: Cell) -> None:
        self.position += 1
        self.estimator.start(cell)
        if self.progress is not None:
            running = f"{cell.task} {cell.framework}-{cell.mode} {cell.variant}"
            self.progress.update(self.task_id, description=running)

    def on_done(self, outcome: Any) -> None:
        self.estimator.finish(outcome.cell, outcome.status, outcome.wall_s)
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        line = cell_line(self.position, len(self.cells), outcome)
        if self.progress is not None:
            style = {"ok": "green", "failed": "red", "skipped": "yellow"}.get(outcome.status, "")
            self.console.print(Text(line, style=style), soft_wrap=True)
            self.progress.advance(self.task_id)
        else:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def summary(self) -> str:
        """`19 cells in 2m 41s: 17 ok, 1 failed, 1 skipped`."""
        done = sum(self.counts.values())
        parts = ", ".join(f"{self.counts[s]} {s}" for s in ("ok", "failed", "skipped") if self.counts.get(s))
        noun = "cell" if len(self.cells) == 1 else "cells"
        cells = f"{done} of {len(self.cells)} {noun}" if done != len(self.cells) else f"{done} {noun}"
        return f"{cells} in {duration(time.monotonic() - self.started)}" + (f": {parts}" if parts else "")
