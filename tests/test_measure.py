"""The timing harness, driven by fake runners whose costs are known."""

from __future__ import annotations

import time

import numpy as np
import pytest

from spotdiff.measure import TimingPlan, time_training


class FakeRunner:
    """Steps cost `step_s`; the first call after construction costs `compile_s` more."""

    whole_loop = False

    def __init__(self, step_s=0.001, compile_s=0.05, fetch_s=0.0):
        self.step_s, self.compile_s, self.fetch_s = step_s, compile_s, fetch_s
        self.compiled, self.value, self.resets = False, 0, 0

    def reset(self):
        self.value, self.resets = 0, self.resets + 1

    def compile(self, steps):
        time.sleep(self.compile_s)
        self.compiled = True

    def run(self, steps):
        if not self.compiled:
            self.compile(steps)
        out = []
        for _ in range(steps):
            time.sleep(self.step_s)
            self.value += 1
            out.append(self.value)
        return out

    def sync(self, handle):
        pass

    def fetch(self, handle):
        time.sleep(self.fetch_s)  # must never be counted as step time
        return {"step": np.asarray(handle, dtype=float)}


def test_first_step_includes_compile_and_steady_state_does_not():
    runner = FakeRunner(step_s=0.001, compile_s=0.05)
    result = time_training(runner, TimingPlan(steps=40, repeats=2, block_steps=10, warmup_steps=10))
    metrics = result.metrics()
    assert metrics["first_step_s"] >= 0.05
    assert 900 <= metrics["steady_step_us"] < 5000
    assert metrics["steady_step_us_min"] <= metrics["steady_step_us"] <= metrics["steady_step_us_max"]
    assert metrics["repeats"] == 2 and runner.resets == 2


def test_series_cover_every_step_of_the_first_repeat_only():
    result = time_training(
        FakeRunner(step_s=0), TimingPlan(steps=23, repeats=3, block_steps=5, warmup_steps=0)
    )
    assert result.series["step"] == [float(i) for i in range(1, 24)]


def test_fetching_records_is_outside_the_clock():
    slow_fetch = FakeRunner(step_s=0.0005, compile_s=0, fetch_s=0.05)
    metrics = time_training(
        slow_fetch, TimingPlan(steps=30, repeats=1, block_steps=10, warmup_steps=0)
    ).metrics()
    assert metrics["steady_step_us"] < 0.05 / 10 * 1e6 / 2  # a counted fetch would add 5000 µs/step


class FakeFusedRunner(FakeRunner):
    whole_loop = True


def test_whole_loop_reports_compile_apart():
    runner = FakeFusedRunner(step_s=0.0005, compile_s=0.05)
    result = time_training(runner, TimingPlan(steps=20, repeats=2))
    metrics = result.metrics()
    assert metrics["compile_s"] >= 0.05
    assert metrics["first_step_s"] >= metrics["compile_s"]
    assert metrics["steady_step_us"] < 5000  # compile not spread over the steps
    assert len(result.series["step"]) == 20


def test_rejects_empty_plans():
    with pytest.raises(ValueError):
        time_training(FakeRunner(), TimingPlan(steps=0))
