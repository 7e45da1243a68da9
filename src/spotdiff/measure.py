"""Honest timing of a training loop: first step (trace/compile included) apart from steady state.

A task implementation hands the harness a `StepRunner`; the harness owns every clock. Clocks are
read only after `runner.sync(handle)` has waited for the device, and per-step records (loss, ...)
stay on the device until a block ends, so fetching them never sits inside a timed region.
"""

from __future__ import annotations

import math
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


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(low, high, coverage): a distribution-free interval for the median from order statistics.

    The k-th smallest and k-th largest of n values bracket the true median with probability
    1 - 2 P(Binomial(n, 1/2) < k); k is the largest with that coverage >= `confidence`. Under six
    values no k reaches 95 %: the interval is then the min-max range and `coverage` says how much
    it covers (75 % for three values), so the figure never claims more than it has.
    """
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("no values")

    def coverage(k: int) -> float:
        return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(k)) / 2.0**n

    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= confidence:
        k += 1
    return ordered[k - 1], ordered[n - k], coverage(k)


@dataclass(frozen=True)
class RepeatRule:
    """When to stop repeating a timed run (calibrated repeats, as pyperf and asv take them).

    Fixed (`max_repeats` None or equal to `min_repeats`): exactly `min_repeats`. Adaptive: after
    each repeat, once `min_repeats` are in, stop when the median's interval (`median_interval`)
    is within +-`spread_bound` of the median, when `budget_s` seconds of timing are spent, or at
    `max_repeats`. The minimum is always taken, whatever the budget.
    """

    min_repeats: int = 3
    max_repeats: int | None = None
    spread_bound: float = 0.05  # half-width of the median's interval / median
    budget_s: float = 4.0  # seconds of timing per cell (compile and every repeat)

    @property
    def adaptive(self) -> bool:
        return self.max_repeats is not None and self.max_repeats > self.min_repeats

    def spread(self, values: Sequence[float]) -> tuple[float, float]:
        """(relative half-width of the median's interval, that interval's coverage)."""
        low, high, coverage = median_interval(values)
        middle = statistics.median(values)
        return ((high - low) / 2 / middle if middle > 0 else math.inf), coverage

    def stop_reason(self, values: Sequence[float], spent_s: float) -> str | None:
        """Why to stop after these per-repeat values (None: take another repeat)."""
        if len(values) < self.min_repeats:
            return None
        if not self.adaptive:
            return "fixed"
        if self.spread(values)[0] <= self.spread_bound:
            return "bound"
        if spent_s >= self.budget_s:
            return "budget"
        return "max_repeats" if len(values) >= (self.max_repeats or 0) else None

    def later_steps(self, steps: int, step_s: float, warmup_steps: int, block_steps: int) -> int:
        """Steps to time in repeats after the first (which always runs, and records, them all).

        A mode whose full run would take more than its share of the budget (eager JAX or
        TensorFlow on a problem where compiled modes take microseconds per step) times a shorter
        run: the warm-up plus at least MIN_STEADY_BLOCKS blocks, as many more as the share holds.
        """
        if not self.adaptive or step_s <= 0:
            return steps
        share_s = self.budget_s / self.min_repeats
        if step_s * steps <= share_s:
            return steps
        fits = math.ceil(share_s / step_s / block_steps) * block_steps
        return min(steps, max(fits, warmup_steps + MIN_STEADY_BLOCKS * block_steps))

    def describe(self) -> dict[str, Any]:
        if not self.adaptive:
            return {"method": "fixed", "min_repeats": self.min_repeats, "max_repeats": self.min_repeats}
        return {"method": "adaptive", "min_repeats": self.min_repeats, "max_repeats": self.max_repeats,
                "spread_bound": self.spread_bound, "budget_s": self.budget_s}


MIN_STEADY_BLOCKS = 5  # a shortened repeat still times this many blocks after its warm-up


@dataclass
class TimingPlan:
    steps: int
    repeats: int = 3  # the repeats taken; with max_repeats, the fewest (see RepeatRule)
    block_steps: int = 50  # steps between two clock reads
    warmup_steps: int = 100  # leading steps of every repeat left out of the steady state
    max_repeats: int | None = None  # None: exactly `repeats`; more: adaptive, see RepeatRule
    spread_bound: float = 0.05
    budget_s: float = 4.0

    @property
    def rule(self) -> RepeatRule:
        return RepeatRule(self.repeats, self.max_repeats, self.spread_bound, self.budget_s)


@dataclass
class TimingResult:
    first_step_s: float
    compile_s: float | None
    steady_step_s_per_repeat: list[float]
    series: dict[str, list[float]] = field(default_factory=dict)
    total_train_s: float = 0.0
    # Repeat 1, block by block: (steps done after the block, its seconds); a compile is (0, s).
    blocks: list[tuple[int, float]] = field(default_factory=list)
    rule: RepeatRule = field(default_factory=RepeatRule)
    stopped_by: str = "fixed"  # fixed | bound | budget | max_repeats
    trajectory_steps: int = 0  # steps of repeat 1, whose series are recorded
    timed_steps: int = 0  # steps of each later repeat (fewer for slow modes, see RepeatRule)
    trajectory_end: dict[str, Any] = field(default_factory=dict)  # time_training's at_trajectory_end

    def timing(self) -> dict[str, Any]:
        """How the steady figure was measured: the repeat rule, what it took, whether it held."""
        spread, coverage = self.rule.spread(self.steady_step_s_per_repeat)
        described = {
            **self.rule.describe(), "repeats": len(self.steady_step_s_per_repeat),
            "stopped_by": self.stopped_by, "spread": spread if math.isfinite(spread) else None,
            "interval_coverage": coverage,
            "statistic": "median over repeats of each repeat's median block time after the warm-up; "
                         "spread: half-width of the median's order-statistic interval / median",
            "trajectory_steps": self.trajectory_steps, "timed_steps": self.timed_steps,
        }
        if self.rule.adaptive:
            described["bound_met"] = spread <= self.rule.spread_bound
        return described

    def metrics(self) -> dict[str, Any]:
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
            "timing": self.timing(),
        }


def _timed(runner: StepRunner, steps: int) -> tuple[float, Any]:
    start = time.perf_counter()
    handle = runner.run(steps)
    runner.sync(handle)
    return time.perf_counter() - start, handle


def _append(series: dict[str, list[float]], records: dict[str, np.ndarray]) -> None:
    for name, values in records.items():
        series.setdefault(name, []).extend(np.asarray(values, dtype=np.float64).ravel().tolist())


Snapshot = Callable[[], dict[str, Any]]


def time_training(runner: StepRunner, plan: TimingPlan,
                  at_trajectory_end: Snapshot | None = None) -> TimingResult:
    """Train from the initial state as often as `plan.rule` asks and time it; series come from
    repeat 1, which always runs every step. `at_trajectory_end` (e.g. the runner's final metrics)
    is called once, off the clock, when repeat 1 ends: later repeats may stop earlier (RepeatRule),
    so the state they leave is not the trajectory's end. Its answer is `TimingResult.trajectory_end`."""
    if plan.steps < 1 or plan.repeats < 1:
        raise ValueError("steps and repeats must be at least 1")
    if runner.whole_loop:
        return _time_whole_loop(runner, plan, at_trajectory_end)
    return _time_blocks(runner, plan, at_trajectory_end)


def _time_whole_loop(runner: StepRunner, plan: TimingPlan,
                     at_trajectory_end: Snapshot | None) -> TimingResult:
    wall_start = time.perf_counter()
    start = time.perf_counter()
    runner.compile(plan.steps)
    compile_s = time.perf_counter() - start
    per_step: list[float] = []
    series: dict[str, list[float]] = {}
    blocks = [(0, compile_s)]
    first_run_s = 0.0
    rule, stopped_by = plan.rule, None
    while stopped_by is None:  # the program is compiled for plan.steps: every repeat runs them all
        runner.reset()
        elapsed, handle = _timed(runner, plan.steps)
        per_step.append(elapsed / plan.steps)
        if len(per_step) == 1:
            first_run_s = elapsed
            blocks.append((plan.steps, elapsed))
            _append(series, runner.fetch(handle))
            trajectory_end = at_trajectory_end() if at_trajectory_end else {}
        stopped_by = rule.stop_reason(per_step, time.perf_counter() - wall_start)
    # Nothing of a fused loop is visible before the whole program has run once.
    return TimingResult(
        first_step_s=compile_s + first_run_s,
        compile_s=compile_s,
        steady_step_s_per_repeat=per_step,
        series=series,
        total_train_s=time.perf_counter() - wall_start,
        blocks=blocks,
        rule=rule, stopped_by=stopped_by, trajectory_steps=plan.steps, timed_steps=plan.steps,
        trajectory_end=trajectory_end,
    )


def _time_blocks(runner: StepRunner, plan: TimingPlan, at_trajectory_end: Snapshot | None) -> TimingResult:
    wall_start = time.perf_counter()
    series: dict[str, list[float]] = {}
    per_repeat: list[float] = []
    blocks: list[tuple[int, float]] = []
    first_step_s = 0.0
    rule, stopped_by = plan.rule, None
    steps = timed_steps = plan.steps
    while stopped_by is None:
        first = not per_repeat
        runner.reset()
        elapsed, handle = _timed(runner, 1)
        if first:
            first_step_s = elapsed
            blocks.append((1, elapsed))
            _append(series, runner.fetch(handle))
        done = 1
        # Short runs (tests) keep at least their second half as steady state.
        warmup = min(plan.warmup_steps, steps // 2)
        block_times: list[float] = []
        while done < steps:
            n = min(plan.block_steps, steps - done)
            elapsed, handle = _timed(runner, n)
            if done >= warmup:
                block_times.append(elapsed / n)
            if first:
                blocks.append((done + n, elapsed))
                _append(series, runner.fetch(handle))
            done += n
        if not block_times:  # a one-step run has no steady state: report the first step
            block_times.append(first_step_s)
        per_repeat.append(statistics.median(block_times))
        if first:  # the trajectory is recorded: later repeats only time, maybe fewer steps
            trajectory_end = at_trajectory_end() if at_trajectory_end else {}
            steps = timed_steps = rule.later_steps(plan.steps, per_repeat[0], plan.warmup_steps,
                                                   plan.block_steps)
        stopped_by = rule.stop_reason(per_repeat, time.perf_counter() - wall_start)
    steady = statistics.median(per_repeat)
    return TimingResult(
        first_step_s=first_step_s,
        compile_s=max(first_step_s - steady, 0.0),
        steady_step_s_per_repeat=per_repeat,
        series=series,
        total_train_s=time.perf_counter() - wall_start,
        blocks=blocks,
        rule=rule, stopped_by=stopped_by, trajectory_steps=plan.steps,
        timed_steps=timed_steps if len(per_repeat) > 1 else plan.steps, trajectory_end=trajectory_end,
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


def repeat_spread(key: str, values: Sequence[float]) -> dict[str, float]:
    """`key_min` / `key_max` over the repeats of one measurement (what `spotdiff compare` needs to
    judge a change beyond noise); under two repeats there is no spread, and none is invented."""
    if len(values) < 2:
        return {}
    return {f"{key}_min": float(min(values)), f"{key}_max": float(max(values))}


def rate_spread(key: str, durations: Sequence[float], items: float) -> dict[str, float]:
    """The spread of a rate, `items` per duration, over repeats that took `durations`."""
    if not durations or min(durations) <= 0:
        return {}
    return repeat_spread(key, [items / d for d in durations])
