"""Honest timing of a training loop: first step (trace/compile included) apart from steady state.

A task implementation hands the harness a `StepRunner`; the harness owns every clock. Clocks are
read only after `runner.sync(handle)` has waited for the device, and per-step records (loss, ...)
stay on the device until a block ends, so fetching them never sits inside a timed region.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np


class StepRunner(Protocol):
    """What a task implementation gives the harness for one framework and mode."""

    whole_loop: bool  # True when all steps are one compiled program (JAX `fused`)

    def reset(self) -> None:
        """Return parameters and optimiser state to their initial values."""

    def compile(self, steps: int) -> None:
        """Compile the whole-loop program ahead of time (whole_loop runners only)."""

    def run(self, steps: int) -> Any:
        """Run `steps` training steps; return a handle to the on-device records (or None)."""

    def sync(self, handle: Any) -> None:
        """Block until the device work behind `handle` is finished."""

    def fetch(self, handle: Any) -> dict[str, np.ndarray]:
        """Copy the per-step records behind `handle` to host numpy arrays, one per series."""


@dataclass
class TimingPlan:
    steps: int
    repeats: int = 3
    block_steps: int = 50  # steps between two clock reads
    warmup_steps: int = 100  # leading steps of every repeat left out of the steady state


@dataclass
class TimingResult:
    first_step_s: float
    compile_s: float | None
    steady_step_s_per_repeat: list[float]
    series: dict[str, list[float]] = field(default_factory=dict)
    total_train_s: float = 0.0
    # Repeat 1, block by block: (steps done after the block, its seconds); a compile is (0, s).
    blocks: list[tuple[int, float]] = field(default_factory=list)

    def metrics(self) -> dict[str, float | None]:
        per_repeat_us = [s * 1e6 for s in self.steady_step_s_per_repeat]
        median_us = statistics.median(per_repeat_us)
        return {
            "first_step_s": self.first_step_s,
            "compile_s": self.compile_s,
            "steady_step_us": median_us,
            "steady_step_us_min": min(per_repeat_us),
            "steady_step_us_max": max(per_repeat_us),
            "steps_per_s": 1e6 / median_us if median_us > 0 else None,
            "repeats": len(per_repeat_us),
            "train_s": self.total_train_s,
        }


def _timed(runner: StepRunner, steps: int) -> tuple[float, Any]:
    start = time.perf_counter()
    handle = runner.run(steps)
    runner.sync(handle)
    return time.perf_counter() - start, handle


def _append(series: dict[str, list[float]], records: dict[str, np.ndarray]) -> None:
    for name, values in records.items():
        series.setdefault(name, []).extend(np.asarray(values, dtype=np.float64).ravel().tolist())


def time_training(runner: StepRunner, plan: TimingPlan) -> TimingResult:
    """Train `plan.repeats` times from the initial state and time it; series come from repeat 1."""
    if plan.steps < 1 or plan.repeats < 1:
        raise ValueError("steps and repeats must be at least 1")
    if runner.whole_loop:
        return _time_whole_loop(runner, plan)
    return _time_blocks(runner, plan)


def _time_whole_loop(runner: StepRunner, plan: TimingPlan) -> TimingResult:
    wall_start = time.perf_counter()
    start = time.perf_counter()
    runner.compile(plan.steps)
    compile_s = time.perf_counter() - start
    per_step: list[float] = []
    series: dict[str, list[float]] = {}
    blocks = [(0, compile_s)]
    first_run_s = 0.0
    for repeat in range(plan.repeats):
        runner.reset()
        elapsed, handle = _timed(runner, plan.steps)
        per_step.append(elapsed / plan.steps)
        if repeat == 0:
            first_run_s = elapsed
            blocks.append((plan.steps, elapsed))
            _append(series, runner.fetch(handle))
    # Nothing of a fused loop is visible before the whole program has run once.
    return TimingResult(
        first_step_s=compile_s + first_run_s,
        compile_s=compile_s,
        steady_step_s_per_repeat=per_step,
        series=series,
        total_train_s=time.perf_counter() - wall_start,
        blocks=blocks,
    )


def _time_blocks(runner: StepRunner, plan: TimingPlan) -> TimingResult:
    wall_start = time.perf_counter()
    series: dict[str, list[float]] = {}
    per_repeat: list[float] = []
    blocks: list[tuple[int, float]] = []
    first_step_s = 0.0
    for repeat in range(plan.repeats):
        runner.reset()
        elapsed, handle = _timed(runner, 1)
        if repeat == 0:
            first_step_s = elapsed
            blocks.append((1, elapsed))
            _append(series, runner.fetch(handle))
        done = 1
        # Short runs (tests) keep at least their second half as steady state.
        warmup = min(plan.warmup_steps, plan.steps // 2)
        block_times: list[float] = []
        while done < plan.steps:
            n = min(plan.block_steps, plan.steps - done)
            elapsed, handle = _timed(runner, n)
            if done >= warmup:
                block_times.append(elapsed / n)
            if repeat == 0:
                blocks.append((done + n, elapsed))
                _append(series, runner.fetch(handle))
            done += n
        if not block_times:  # a one-step run has no steady state: report the first step
            block_times.append(first_step_s)
        per_repeat.append(statistics.median(block_times))
    steady = statistics.median(per_repeat)
    return TimingResult(
        first_step_s=first_step_s,
        compile_s=max(first_step_s - steady, 0.0),
        steady_step_s_per_repeat=per_repeat,
        series=series,
        total_train_s=time.perf_counter() - wall_start,
        blocks=blocks,
    )


# Input pipeline vs training step, per epoch (digits and any task with its own epoch loop).


def timed_epoch(batches: Iterable[Any], step: Callable[[Any], Any],
                sync: Callable[[Any], None]) -> tuple[list[Any], float, float]:
    """Run `step` on every batch of `batches`; return (step outputs, input_s, step_s).

    input_s is the time spent waiting for the next batch (the iterator's `next`, so whatever the
    iterator does: a DataLoader's collation, numpy indexing, the copy to the device); step_s is
    from the batch in hand until `sync(output)` returned, so queued device work is inside it.
    """
    outputs: list[Any] = []
    input_s = step_s = 0.0
    iterator = iter(batches)
    while True:
        start = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            input_s += time.perf_counter() - start
            return outputs, input_s, step_s
        ready = time.perf_counter()
        output = step(batch)
        sync(output)
        input_s += ready - start
        step_s += time.perf_counter() - ready
        outputs.append(output)


def split_input_wait(begin_s: Sequence[float], end_s: Sequence[float],
                     ready_s: Sequence[float]) -> tuple[float, float]:
    """(input_s, step_s) of steps that fetch their own batch (Keras `fit` on tf.data).

    Step k ran from begin_s[k] to end_s[k] (read after a device sync); its batch left the input
    pipeline at ready_s[k]. A batch that was ready before its step began cost no wait; otherwise
    the step waited ready_s[k] - begin_s[k] for it, and the rest of the step was compute.
    """
    if not len(begin_s) == len(end_s) <= len(ready_s):
        raise ValueError("every step needs a begin, an end and its batch's ready time")
    steps = zip(begin_s, end_s, ready_s)
    input_s = sum(min(max(ready - begin, 0.0), end - begin) for begin, end, ready in steps)
    return input_s, sum(end - begin for begin, end in zip(begin_s, end_s)) - input_s
