"""`spotdiff compare` and `spotdiff history --trend` over hand-made results.json (no framework runs)."""

from __future__ import annotations

import copy
import io
import json
import math
from pathlib import Path

import pytest
from conftest import cell, make_results, run_cli
from rich.console import Console

from spotdiff.compare import IMPROVED, NOT_JUDGED, UNCHANGED, WORSE, Measured, compare_runs, judge
from spotdiff.record import store
from spotdiff.report.compare import write_comparison
from spotdiff.report.compare_terminal import compare_renderables
from spotdiff.trend import cell_trend

TORCH_EAGER = "exponent/torch/eager/manual"


def save(folder: Path, results: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return folder


def find_cell(results: dict, key: str) -> dict:
    task, framework, mode, variant = key.split("/")
    return next(c for c in results["cells"] if (c["task"], c["framework"], c["mode"], c["variant"]) ==
                (task, framework, mode, variant))


def slower_copy(factor: float = 2.0) -> dict:
    """make_results() with torch eager manual `factor` times slower, its spread moved along."""
    results = copy.deepcopy(make_results())
    results["run_id"] = "test-run-43"
    metrics = find_cell(results, TORCH_EAGER)["metrics"]
    for key in ("steady_step_us", "steady_step_us_min", "steady_step_us_max"):
        metrics[key] *= factor
    return results


def row(comparison, key: str, metric: str):
    return next(r for r in comparison.metrics if r.cell == key and r.metric == metric)


def printed(comparison) -> str:
    console = Console(record=True, width=200, file=io.StringIO())
    for renderable in compare_renderables(comparison):
        console.print(renderable)
    return console.export_text()


# The verdict rule, one metric at a time


def test_overlapping_spreads_are_noise_even_at_ratio_one_and_a_half():
    verdict, reason, ratio = judge(Measured(100.0, 60.0, 160.0), Measured(150.0, 140.0, 200.0), True)
    assert (verdict, ratio) == (UNCHANGED, 1.5)
    assert reason == "spreads overlap"


def test_disjoint_spreads_within_the_threshold_are_unchanged():
    a, b = Measured(100.0, 99.0, 101.0), Measured(105.0, 104.0, 106.0)
    assert judge(a, b, True)[0] == UNCHANGED  # ratio 1.05 < 1.1
    assert judge(a, b, True, threshold=1.04)[0] == WORSE  # the same pair beyond a tighter threshold
    assert judge(b, a, True, threshold=1.04)[0] == IMPROVED


def test_direction_comes_from_lower_is_better():
    a, b = Measured(100.0, 99.0, 101.0), Measured(50.0, 49.0, 51.0)
    assert judge(a, b, lower_is_better=True)[0] == IMPROVED
    assert judge(a, b, lower_is_better=False)[0] == WORSE


@pytest.mark.parametrize("a, b, reason", [
    (Measured(None), Measured(100.0, 99.0, 101.0), "no value in A"),
    (Measured(100.0, 99.0, 101.0), Measured(None), "no value in B"),
    (Measured(100.0), Measured(300.0), "no spread in A and B"),  # 3x, but single numbers
    (Measured(100.0, 100.0, 100.0), Measured(300.0, 290.0, 310.0), "no spread in A"),  # one repeat
])
def test_missing_or_single_values_are_never_judged(a, b, reason):
    verdict, why, _ = judge(a, b, True)
    assert (verdict, why) == (NOT_JUDGED, reason)


# Two runs


def test_a_run_against_itself_changes_nothing():
    comparison = compare_runs(make_results(), make_results())
    counts = comparison.counts()
    assert counts[WORSE] == counts[IMPROVED] == counts["changed"] == 0
    assert counts[UNCHANGED] > 0
    assert not (comparison.versions or comparison.environment or comparison.status or comparison.parity
                or comparison.only_in_a or comparison.only_in_b)
    assert not comparison.got_worse()


def test_a_cell_twice_as_slow_with_disjoint_spreads_is_worse():
    comparison = compare_runs(make_results(), slower_copy(2.0))
    slow = row(comparison, TORCH_EAGER, "steady_step_us")
    assert (slow.verdict, slow.a, slow.b, slow.ratio) == (WORSE, 120.0, 240.0, 2.0)
    assert (slow.b_min, slow.b_max) == (238.0, 242.0)
    assert [r for r in comparison.metrics if r.verdict == WORSE] == [slow]
    assert comparison.got_worse()


def test_faster_is_improved_and_not_a_failure():
    comparison = compare_runs(make_results(), slower_copy(0.5))
    assert row(comparison, TORCH_EAGER, "steady_step_us").verdict == IMPROVED
    assert not comparison.got_worse()


def test_higher_is_better_metrics_get_worse_when_they_drop():
    def digits(images_per_s: float) -> dict:
        spread = (images_per_s * 0.98, images_per_s * 1.02)
        one = cell("torch", "eager", "sgd", task="digits", series={}, steady_images_per_s=images_per_s,
                   steady_images_per_s_min=spread[0], steady_images_per_s_max=spread[1])
        return {"run_id": "d", "environment": {}, "cells": [one]}

    comparison = compare_runs(digits(1000.0), digits(500.0))
    dropped = row(comparison, "digits/torch/eager/sgd", "steady_images_per_s")
    assert (dropped.lower_is_better, dropped.verdict, dropped.ratio) == (False, WORSE, 0.5)


def test_nan_and_missing_metrics_are_shown_but_not_judged():
    b = slower_copy(3.0)
    metrics = find_cell(b, TORCH_EAGER)["metrics"]
    metrics["steady_step_us"] = math.nan  # a worker that wrote NaN
    del metrics["first_step_s"]
    metrics["import_s"] = 3.0  # 3x slower, but import_s has no spread
    comparison = compare_runs(make_results(), b)
    assert row(comparison, TORCH_EAGER, "steady_step_us").verdict == NOT_JUDGED
    assert row(comparison, TORCH_EAGER, "first_step_s").reason == "no value in B"
    imported = row(comparison, TORCH_EAGER, "import_s")
    assert (imported.verdict, imported.ratio) == (NOT_JUDGED, 3.0)
    assert not comparison.got_worse()


def test_a_changed_torch_version_is_listed_first():
    b = slower_copy(1.0)
    b["environment"]["frameworks"]["torch"] = "2.14.0"
    b["environment"]["threads"] = 1
    comparison = compare_runs(make_results(), b)
    assert [(d.name, d.a, d.b) for d in comparison.versions] == [("torch", "2.13.0", "2.14.0")]
    assert [(d.name, d.a, d.b) for d in comparison.environment] == [("threads", 2, 1)]
    lines = printed(comparison).splitlines()
    assert lines[0] == "versions changed: torch 2.13.0 → 2.14.0"
    assert lines[1].startswith("metrics: 0 worse, 0 improved")
    assert "environment: threads 2 → 1" in lines


def test_cells_in_one_run_only_and_status_changes_are_listed():
    b = slower_copy(1.0)
    b["cells"].append(cell("jax", "jit", "extra", 3.0, (2.9, 3.1)))
    b["cells"] = [c for c in b["cells"] if c["framework"] != "tensorflow" or c["mode"] != "graph"]
    find_cell(b, "exponent/jax/fused/manual").update(status="failed", error="boom", metrics={})
    comparison = compare_runs(make_results(), b)
    assert comparison.only_in_b == ["exponent/jax/jit/extra"]
    assert comparison.only_in_a == ["exponent/tensorflow/graph/manual"]
    assert [(d.name, d.a, d.b, d.verdict) for d in comparison.status] == [
        ("exponent/jax/fused/manual", "ok", "failed", WORSE)]
    assert not [r for r in comparison.metrics if r.cell == "exponent/jax/fused/manual"]
    assert comparison.got_worse()
    text = printed(comparison)
    assert "only in B: exponent/jax/jit/extra" in text
    assert "cell exponent/jax/fused/manual: ok → failed (worse)" in text


def test_parity_pass_to_fail_is_listed_as_worse():
    b = slower_copy(1.0)
    b["parity"]["exponent"]["manual"]["passed"] = False
    comparison = compare_runs(make_results(), b)
    assert [(d.name, d.a, d.b, d.verdict) for d in comparison.parity] == [
        ("exponent/manual", "pass", "fail", WORSE)]
    assert comparison.got_worse()


def test_the_page_and_the_json_hold_every_row(tmp_path):
    b = slower_copy(2.0)
    b["environment"]["frameworks"]["torch"] = "2.14.0"
    comparison = compare_runs(make_results(), b)
    html_path, json_path = write_comparison(comparison, tmp_path, Path("runs/a"), Path("runs/b"))
    html = html_path.read_text(encoding="utf-8")
    assert html.index("Versions changed") < html.index('id="metrics"')
    assert "<code>torch</code> 2.13.0 →" in html
    worse_row = html.split('<tr class="worse"><td>exponent/torch/eager/manual</td>', 1)[1].split("</tr>")[0]
    for shown in ("steady µs/step", "120 µs (119–121)", "240 µs (238–242)", "2.00x", "worse"):
        assert shown in worse_row
    assert html.count("<tr class=") == len(comparison.metrics)
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert len(data["metrics"]) == len(comparison.metrics)
    assert data["counts"][WORSE] == 1 and data["got_worse"] is True
    assert data["run_b"] == {"run_id": "test-run-43", "path": "runs/b"}


# The command line


def test_cli_exit_codes_for_ci(tmp_path):
    a, b = save(tmp_path / "a", make_results()), save(tmp_path / "b", slower_copy(2.0))
    same = run_cli("compare", str(a), str(a))
    assert same.returncode == 0, same.stderr
    assert "0 worse, 0 improved, 0 changed" in same.stdout
    assert (a / "compare-a" / "compare.html").exists()
    slower = run_cli("compare", str(a), str(b), "--out", str(tmp_path / "out"))
    assert slower.returncode == 1, slower.stderr
    assert "1 worse" in slower.stdout and "exponent/torch/eager/manual" in slower.stdout
    again = run_cli("compare", str(a), str(b), "--out", str(tmp_path / "out"), "--overwrite")
    assert again.returncode == 1, again.stderr


@pytest.mark.parametrize("case", ["no results", "bad json", "just claimed", "no common cell", "threshold",
                                  "used out"])
def test_bad_input_exits_2_with_one_line(tmp_path, case):
    a = save(tmp_path / "a", make_results())
    b = save(tmp_path / "b", make_results())
    args = [str(a), str(b)]
    expected = {"no results": "no results.json", "bad json": "not valid JSON",
                "just claimed": "is empty: its run is just starting",
                "no common cell": "no cell in common", "threshold": "--threshold",
                "used out": "not empty"}[case]
    if case == "no results":
        args[1] = str(tmp_path / "empty")
    elif case == "bad json":
        (b / "results.json").write_text("{ torn", encoding="utf-8")
    elif case == "just claimed":  # a run claims results.json empty before its first write
        (b / "results.json").write_text("", encoding="utf-8")
    elif case == "no common cell":
        save(b, {"run_id": "d", "environment": {}, "cells": [cell("torch", "eager", "sgd", task="digits")]})
    elif case == "threshold":
        args += ["--threshold", "0.9"]
    else:
        (b / "compare-a").mkdir()
        (b / "compare-a" / "notes.txt").write_text("mine", encoding="utf-8")
    result = run_cli("compare", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spotdiff: error:") and expected in lines[0], lines


# The trend view


@pytest.fixture
def two_indexed_runs(tmp_path, monkeypatch):
    """A store of its own holding an older run and a newer one twice as slow, indexed newest first."""
    monkeypatch.setenv("SPOTDIFF_HOME", str(tmp_path / "home"))
    older, newer = make_results(), slower_copy(2.0)
    older["environment"]["started_at"] = "2026-01-01T00:00:00+0000"
    newer["environment"]["started_at"] = "2026-02-01T00:00:00+0000"
    newer["environment"]["frameworks"]["torch"] = "2.14.0"
    store.index_run(newer, save(tmp_path / "newer", newer))
    store.index_run(older, save(tmp_path / "older", older))
    return tmp_path


def test_trend_shows_both_runs_oldest_first(two_indexed_runs):
    trend = cell_trend(TORCH_EAGER, "steady_step_us", store.cell_history())
    assert [(p.run_id, p.version, p.value, p.low, p.high) for p in trend.points] == [
        ("test-run-42", "2.13.0", 120.0, 119.0, 121.0), ("test-run-43", "2.14.0", 240.0, 238.0, 242.0)]
    plot = two_indexed_runs / "trend.svg"
    result = run_cli("history", "--trend", "exponent-torch-eager-manual-s0", "--metric", "steady_step_us",
                     "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    assert result.stdout.index("120 µs (119–121)") < result.stdout.index("240 µs (238–242)")
    assert f"plot:  {plot}" in result.stdout and plot.read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("args, expected", [
    (["--trend", "exponent/torch/eager/nope", "--metric", "steady_step_us"], "exponent/torch/eager/manual"),
    (["--trend", TORCH_EAGER, "--metric", "nope"], "choose from: steady_step_us, first_step_s"),
    (["--trend", TORCH_EAGER], "--trend needs --metric NAME"),
    (["--metric", "steady_step_us"], "go with --trend"),
])
def test_trend_bad_cell_or_metric_exits_2_with_the_choices(two_indexed_runs, args, expected):
    result = run_cli("history", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
