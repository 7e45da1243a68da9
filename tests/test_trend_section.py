"""report.html's "Across runs" section: a cell's headline metric over the stored runs that measured it
the same way on this machine, from hand-made results indexed into a temporary store."""

from __future__ import annotations

import copy

from conftest import cell

from spotdiff.record import store
from spotdiff.report import html
from spotdiff.report.trend_section import trend_section


def _run(run_id, started, steady, host="h", threads=1, status="ok"):
    return {
        "run_id": run_id, "status": "complete",
        "environment": {"started_at": started, "hostname": host, "cpu_model": "cpu",
                        "frameworks": {"torch": "2.13.0", "jax": "0.10.0"}},
        "experiment": {"threads": threads},
        "cells": [cell("torch", "eager", "manual", steady, (steady * 0.9, steady * 1.1), status=status),
                  cell("jax", "jit", "manual", 16.0, (15.0, 17.0))],
    }


def _indexed(tmp_path, *runs):
    db = tmp_path / "history.sqlite"
    for results in runs:
        store.index_run(results, tmp_path / results["run_id"], db)
    return store.cell_history(db)


def test_a_cell_seen_before_gets_its_values_and_the_ratio_to_the_previous_run(tmp_path):
    first, second = _run("a", "2026-11-01T10:00:00", 100.0), _run("b", "2026-11-02T10:00:00", 150.0)
    section = trend_section(second, tmp_path / "plots", _indexed(tmp_path, first, second))
    (task,) = section["tasks"]
    assert task["name"] == "exponent" and task["metric"] == "steady_step_us"
    rows = {row["cell"]: row for row in task["rows"]}
    torch = next(row for label, row in rows.items() if label.startswith("torch"))
    assert (torch["runs"], torch["ratio"]) == (2, "1.50x")
    assert torch["previous"].startswith("100") and torch["now"].startswith("150")
    assert "<svg" in task["svg"] and (tmp_path / "plots" / "trend-exponent.png").stat().st_size > 1000


def test_only_runs_measured_the_same_way_on_this_machine_up_to_this_run_count(tmp_path):
    elsewhere = _run("other-host", "2026-11-01T09:00:00", 10.0, host="laptop")
    other_threads = _run("two-threads", "2026-11-01T09:30:00", 20.0, threads=2)
    first, this = _run("a", "2026-11-01T10:00:00", 100.0), _run("b", "2026-11-02T10:00:00", 120.0)
    later = _run("c", "2026-11-03T10:00:00", 999.0)
    rows = _indexed(tmp_path, elsewhere, other_threads, first, this, later)
    rows_by_cell = {r["cell"]: r for r in trend_section(this, None, rows)["tasks"][0]["rows"]}
    torch = next(row for label, row in rows_by_cell.items() if label.startswith("torch"))
    assert (torch["runs"], torch["first"][:3], torch["ratio"]) == (2, "100", "1.20x")


def test_no_cell_seen_before_means_no_section(tmp_path):
    only = _run("a", "2026-11-01T10:00:00", 100.0)
    assert trend_section(only, None, _indexed(tmp_path, only)) is None
    assert trend_section(only, None, []) is None


def test_a_failed_or_nan_value_is_not_a_point(tmp_path):
    first = _run("a", "2026-11-01T10:00:00", 100.0)
    nan = _run("b", "2026-11-02T10:00:00", float("nan"))
    failed = _run("c", "2026-11-03T10:00:00", 100.0, status="failed")
    section = trend_section(failed, None, _indexed(tmp_path, first, nan, failed))
    labels = [row["cell"] for row in section["tasks"][0]["rows"]]
    assert labels and not any(label.startswith("torch") for label in labels)  # 1 finite value: no line


def test_the_report_shows_the_section_from_the_history_store(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOTDIFF_HOME", str(tmp_path / "home"))
    first, second = _run("a", "2026-11-01T10:00:00", 100.0), _run("b", "2026-11-02T10:00:00", 50.0)
    for results in (first, second):
        store.index_run(results, tmp_path / results["run_id"])
    page = html.render_report(copy.deepcopy(second), tmp_path / "b").read_text(encoding="utf-8")
    section = page[page.index('<section id="trend">'):]
    assert "Across runs" in section and "0.50x" in section and "<svg" in section
    lone = _run("z", "2026-11-02T11:00:00", 50.0, host="elsewhere")
    page = html.render_report(lone, tmp_path / "z").read_text(encoding="utf-8")
    assert '<section id="trend">' not in page
