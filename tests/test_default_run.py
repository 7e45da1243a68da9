"""The default run (which cells), adaptive repeats (when to stop), the time-left estimate from the
history store, and the progress lines a log gets. Parent side only, except one tiny CLI run."""

from __future__ import annotations

import io
import itertools
import json
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from conftest import run_cli
from rich.console import Console

from spotdiff import frameworks as fw
from spotdiff.experiment import build_experiment, expand
from spotdiff.measure import RepeatRule, TimingPlan, median_interval, time_training
from spotdiff.record import store
from spotdiff.report.progress import Estimator, RunProgress
from spotdiff.tasks import get_spec, has_impl, task_names

EXPONENT_DEFAULT = {("torch", "eager"), ("tensorflow", "graph"), ("tensorflow", "xla"), ("jax", "jit"),
                    ("jax", "fused"), ("keras", "tensorflow"), ("keras", "tensorflow-jit")}
DIGITS_DEFAULT = {("torch", "eager"), ("tensorflow", "fit"), ("jax", "jit")}


def _pairs(cells, task):
    return {(c.framework, c.mode) for c in cells if c.task == task}


# Which cells


def test_the_default_run_is_the_posts_two_tasks_in_each_frameworks_default_modes():
    exp = build_experiment({})
    cells = expand(exp)
    assert exp.selection == "default" and exp.tasks == ["exponent", "digits"]
    assert _pairs(cells, "exponent") == EXPONENT_DEFAULT
    keras_digits = {("keras", "tensorflow"), ("keras", "tensorflow-jit")}
    keras_digits = keras_digits if has_impl("digits", "keras") else set()
    assert _pairs(cells, "digits") == DIGITS_DEFAULT | keras_digits
    assert {c.variant for c in cells if c.task == "exponent"} == {"manual", "optimizer"}
    assert len(cells) == 2 * len(EXPONENT_DEFAULT) + len(DIGITS_DEFAULT | keras_digits)


def test_all_runs_every_task_and_mode_and_contains_the_default():
    every = expand(build_experiment({"selection": "all"}))
    assert {c.task for c in every} == set(task_names()) >= {"exponent", "digits", "sequences", "trees"}
    for task in task_names():
        spec = get_spec(task)
        expected = {(f, m, v) for f, modes in spec.modes.items() for m in modes for v in spec.variants}
        assert {(c.framework, c.mode, c.variant) for c in every if c.task == task} == expected
    assert {c.id for c in expand(build_experiment({}))} < {c.id for c in every}
    assert len({c.id for c in every}) == len(every)


def test_naming_tasks_or_modes_works_as_before_the_default_existed():
    named = expand(build_experiment({"tasks": ["exponent"]}))
    every_mode = {(f, m) for f, modes in get_spec("exponent").modes.items() for m in modes}
    assert _pairs(named, "exponent") == every_mode
    eager = expand(build_experiment({"modes": ["eager"]}))
    assert {c.task for c in eager} == {"exponent", "digits"} and {c.mode for c in eager} == {"eager"}
    assert ("jax", "eager") in _pairs(eager, "exponent")  # a named mode runs even where it is not a default
    torch_only = expand(build_experiment({"frameworks": ["torch"]}))
    assert {(c.task, c.mode) for c in torch_only} == {("exponent", "eager"), ("digits", "eager")}


def test_declared_defaults_name_real_modes():
    for task in task_names():
        spec = get_spec(task)
        for framework, modes in spec.default_modes.items():
            assert set(modes) <= set(spec.modes.get(framework, ())), (task, framework, modes)
    for framework in fw.FRAMEWORKS.values():
        marked = [m.name for m in framework.modes if m.default]
        assert not framework.modes or marked, f"{framework.name} declares modes but no default one"


def test_dash_dash_all_reaches_the_experiment(monkeypatch):
    from typer.testing import CliRunner

    from spotdiff import cli, orchestrate

    seen = []

    def fake_run(exp, *args, **kwargs):
        seen.append(exp)
        raise KeyboardInterrupt  # stop before any child starts

    monkeypatch.setattr(orchestrate, "run_experiment", fake_run)
    for args, selection in ((["run", "--all"], "all"), (["run"], "default"), (["run", "exponent"], "named")):
        result = CliRunner().invoke(cli.app, args)
        assert result.exit_code == 130, result.output
        assert seen[-1].selection == selection


# When to stop repeating


def test_median_interval_is_the_range_under_six_values_and_narrows_beyond():
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0, 0.75)
    low, high, coverage = median_interval(list(range(1, 11)))
    assert (low, high) == (2, 9) and coverage == pytest.approx(0.9785, abs=1e-4)


ADAPTIVE = RepeatRule(min_repeats=3, max_repeats=10, spread_bound=0.05, budget_s=4.0)


def test_tight_timings_stop_at_the_minimum():
    assert ADAPTIVE.stop_reason([1.00, 1.02], spent_s=0.1) is None  # never fewer than three
    assert ADAPTIVE.stop_reason([1.00, 1.02, 0.99], spent_s=0.1) == "bound"


def test_noisy_timings_go_on_until_the_budget_is_spent():
    noisy = [1.0, 1.5, 0.7, 1.3, 0.8]
    assert ADAPTIVE.stop_reason(noisy[:3], spent_s=1.0) is None
    assert ADAPTIVE.stop_reason(noisy, spent_s=3.9) is None
    assert ADAPTIVE.stop_reason(noisy, spent_s=4.0) == "budget"
    assert ADAPTIVE.stop_reason(noisy + [1.2] * 5, spent_s=1.0) == "max_repeats"


def test_the_minimum_is_taken_even_past_the_budget_and_fixed_counts_stay_fixed():
    assert ADAPTIVE.stop_reason([1.0, 2.0], spent_s=100.0) is None
    fixed = RepeatRule(min_repeats=5)
    assert not fixed.adaptive
    assert fixed.stop_reason([1.0] * 4, spent_s=100.0) is None
    assert fixed.stop_reason([1.0, 9.0, 1.0, 9.0, 1.0], spent_s=0.0) == "fixed"


@dataclass
class ScriptedRunner:
    """A StepRunner whose steps cost nothing; the harness's clock reads come from `costs`."""

    clock: Any
    whole_loop: bool = False
    done: int = 0
    calls: list[int] = field(default_factory=list)

    def reset(self):
        self.done = 0

    def compile(self, steps):
        pass

    def run(self, steps):
        self.calls.append(steps)
        start = self.done
        self.done += steps
        return np.arange(start + 1, self.done + 1, dtype=float)

    def sync(self, handle):
        pass

    def fetch(self, handle):
        return {"step": handle}

    def final_metrics(self):
        return {"final_step": self.done}


class FakeClock:
    """perf_counter() that moves `per_step_s(repeat)` per step run, and nothing otherwise."""

    def __init__(self, per_step_s):
        self.now, self.per_step_s, self.repeat = 0.0, per_step_s, 0

    def __call__(self):
        return self.now


def _timed_with(monkeypatch, per_repeat_step_s, plan):
    clock = FakeClock(None)
    runner = ScriptedRunner(clock)
    step_costs = iter(per_repeat_step_s)
    cost = {"s": 0.0}
    original_reset, original_run = runner.reset, runner.run

    def reset():
        cost["s"] = next(step_costs)
        original_reset()

    def run(steps):
        clock.now += steps * cost["s"]
        return original_run(steps)

    runner.reset, runner.run = reset, run
    monkeypatch.setattr("spotdiff.measure.time.perf_counter", clock)
    return runner, time_training(runner, plan, at_trajectory_end=runner.final_metrics)


def test_harness_stops_early_when_tight_and_runs_to_the_budget_when_noisy(monkeypatch):
    plan = TimingPlan(steps=2000, repeats=3, block_steps=50, warmup_steps=100, max_repeats=10,
                      spread_bound=0.05, budget_s=1.0)
    _, tight = _timed_with(monkeypatch, itertools.repeat(1e-4), plan)
    assert tight.metrics()["repeats"] == 3
    assert tight.timing()["stopped_by"] == "bound" and tight.timing()["bound_met"] is True
    _, noisy = _timed_with(monkeypatch, itertools.cycle([1e-4, 3e-4, 0.5e-4, 2e-4]), plan)
    timing = noisy.timing()
    assert timing["stopped_by"] == "budget" and timing["bound_met"] is False and 3 < timing["repeats"] < 10
    assert noisy.metrics()["steady_step_us_min"] < noisy.metrics()["steady_step_us_max"]  # spread kept


def test_slow_modes_time_fewer_steps_after_recording_the_whole_trajectory(monkeypatch):
    plan = TimingPlan(steps=2000, repeats=3, block_steps=50, warmup_steps=100, max_repeats=10,
                      spread_bound=0.05, budget_s=3.0)
    runner, slow = _timed_with(monkeypatch, itertools.repeat(2e-3), plan)  # 4 s per full repeat
    timing = slow.timing()
    assert timing["trajectory_steps"] == 2000 and timing["timed_steps"] == 500  # 1 s share / 2 ms
    assert len(slow.series["step"]) == 2000  # the trajectory is whole
    assert slow.trajectory_end == {"final_step": 2000}  # final metrics from its end, not a short repeat
    assert runner.done == 500 and sum(runner.calls) == 2000 + 500 * (timing["repeats"] - 1)
    _, fast = _timed_with(monkeypatch, itertools.repeat(1e-5), plan)
    assert fast.timing()["timed_steps"] == 2000


def test_a_fixed_count_never_shortens_a_repeat(monkeypatch):
    plan = TimingPlan(steps=2000, repeats=2, block_steps=50, warmup_steps=100)
    runner, result = _timed_with(monkeypatch, itertools.repeat(2e-3), plan)
    assert runner.calls.count(1) == 2 and sum(runner.calls) == 4000
    assert result.timing()["method"] == "fixed" and "bound_met" not in result.timing()


def test_cells_carry_the_rule_and_repeats_n_fixes_the_count():
    (adaptive,) = expand(build_experiment({"tasks": ["exponent"], "frameworks": ["jax"], "modes": ["jit"],
                                           "variants": ["manual"]}))
    assert (adaptive.repeats, adaptive.max_repeats) == (3, 10)
    (fixed,) = expand(build_experiment({"tasks": ["exponent"], "frameworks": ["jax"], "modes": ["jit"],
                                        "variants": ["manual"], "repeats": 5}))
    assert (fixed.repeats, fixed.max_repeats) == (5, None)


# Time left, from the history store


def _indexed(db, run_id, experiment, walls, hostname=None, started="2026-01-01T00:00:00"):
    cells = [{"id": cell_id, "task": "exponent", "framework": "jax", "mode": "jit", "variant": "manual",
              "status": "ok", "wall_s": wall, "metrics": {}} for cell_id, wall in walls.items()]
    results = {"run_id": run_id, "status": "complete", "experiment": experiment, "cells": cells,
               "environment": {"hostname": hostname or socket.gethostname(), "started_at": started}}
    store.index_run(results, db.parent / run_id, db)


def test_time_left_comes_from_past_runs_then_from_this_runs_mean(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOTDIFF_HOME", str(tmp_path))
    exp = build_experiment({"tasks": ["exponent"], "frameworks": ["jax"], "modes": ["jit", "fused"]})
    cells = expand(exp)  # jit and fused, manual and optimizer
    experiment = exp.model_dump()
    known = {cells[0].id: 10.0, cells[1].id: 20.0}
    _indexed(store.db_path(), "old", experiment, {cells[0].id: 30.0, cells[1].id: 20.0}, started="2025")
    _indexed(store.db_path(), "new", experiment, known, started="2026-1")
    _indexed(store.db_path(), "newer", experiment, known, started="2026-2")
    _indexed(store.db_path(), "elsewhere", experiment, {cells[2].id: 99.0}, hostname="another-machine")
    other = {**experiment, "threads": experiment["threads"] + 1}
    _indexed(store.db_path(), "other-settings", other, {cells[3].id: 77.0})

    now = {"t": 0.0}
    estimator = Estimator.from_store(cells, experiment)
    estimator.clock = lambda: now["t"]
    assert estimator.past_s == known  # median of the runs seen here, with these settings
    assert estimator.remaining_s() is None  # two cells nobody has timed, and none finished yet
    estimator.start(cells[0])
    now["t"] = 4.0
    estimator.finish(cells[0], "ok", 6.0)
    estimator.start(cells[1])
    now["t"] = 9.0  # 5 s into a cell expected to take 20
    assert estimator.remaining_s() == pytest.approx(15.0 + 6.0 + 6.0)  # unseen cells: this run's mean


def test_a_store_from_before_wall_times_is_migrated(tmp_path):
    db = tmp_path / "h.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript(store.SCHEMA.replace("    wall_s      REAL,\n    fingerprint TEXT,\n", ""))
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    _indexed(db, "r", {}, {"exponent-jax-jit-manual-s0": 3.5})
    fingerprint = store.cell_fingerprint("exponent-jax-jit-manual-s0", {})
    assert store.past_wall_s([fingerprint], socket.gethostname(), db) == {fingerprint: 3.5}


# What a log sees


@dataclass
class Outcome:
    cell: Any
    status: str
    wall_s: float
    metrics: dict = field(default_factory=dict)
    error: str | None = None


def test_a_log_gets_one_plain_line_per_cell_and_a_summary():
    cells = expand(build_experiment({"tasks": ["exponent"], "frameworks": ["jax", "torch"],
                                     "modes": ["jit", "eager"], "variants": ["manual"]}))
    out = io.StringIO()
    console = Console(file=out, width=80)  # not a terminal, as in CI or a pipe
    progress = RunProgress(cells, console, Estimator(cells, {}, lambda cell: cell.id))
    metrics = {"steady_step_us": 16.2, "steady_step_us_min": 16.0, "steady_step_us_max": 16.7, "repeats": 3,
               "first_step_s": 0.08}
    with progress:
        for cell, status in zip(cells, ("ok", "failed", "skipped")):
            progress.on_start(cell)
            progress.on_done(Outcome(cell, status, 1.5, metrics if status == "ok" else {},
                                     None if status == "ok" else f"{status} because of a long reason " * 3))
    console.print(progress.summary())
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text
    lines = text.splitlines()
    assert len(lines) == len(cells) + 1  # long lines are not wrapped into more
    assert lines[0].startswith(f"[1/{len(cells)}] exponent ") and "(16.0–16.7, 3 repeats)" in lines[0]
    assert lines[-1].endswith(f"{len(cells)} cells in 0 s: 1 ok, 1 failed, 1 skipped")


@pytest.mark.slow
def test_the_command_in_a_pipe_prints_plain_lines(tmp_path):
    run = run_cli("run", "exponent", "--frameworks", "jax", "--modes", "jit,fused", "--variant", "manual",
                  "--threads", "1", "--repeats", "1", "--set", "steps=40", "--set", "warmup_steps=10",
                  "--set", "block_steps=10", "--out", str(tmp_path / "run"))
    assert run.returncode == 0, run.stderr
    assert "\x1b" not in run.stdout + run.stderr
    finished = [line for line in run.stdout.splitlines() if line.startswith("[")]
    assert [line.split()[0] for line in finished] == ["[1/2]", "[2/2]"]
    assert "2 cells in " in run.stdout and ": 2 ok" in run.stdout
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert all(c["metrics"]["timing"]["method"] == "fixed" for c in saved["cells"])


def test_a_terminal_gets_a_live_display_that_is_taken_down(monkeypatch):
    cells = expand(build_experiment({"tasks": ["exponent"], "frameworks": ["jax"], "modes": ["jit"],
                                     "variants": ["manual"]}))
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    progress = RunProgress(cells, console, Estimator(cells, {}, lambda cell: cell.id))
    with pytest.raises(KeyboardInterrupt), progress:
        progress.on_start(cells[0])
        time.sleep(0.15)
        raise KeyboardInterrupt
    assert progress.progress is None and "exponent jax-jit manual" in out.getvalue()
