"""The SQLite history: indexing is idempotent, newest first, and `spotdiff history` shows it."""

from __future__ import annotations

from conftest import run_cli

from spotdiff.record import store


def _results(run_id, started, status="ok"):
    return {
        "run_id": run_id, "status": "complete",
        "environment": {"started_at": started, "hostname": "h", "cpu_model": "cpu", "frameworks": {"jax": "0.10"}},
        "cells": [{"id": "c1", "task": "exponent", "framework": "jax", "mode": "jit", "variant": "manual",
                   "status": status, "metrics": {"steady_step_us": 12.5}}],
    }


def test_index_list_and_reindex(tmp_path):
    db = tmp_path / "h.sqlite"
    store.index_run(_results("a", "2026-01-01T00:00:00"), tmp_path, db)
    store.index_run(_results("b", "2026-01-02T00:00:00", "failed"), tmp_path, db)
    store.index_run(_results("a", "2026-01-01T00:00:00"), tmp_path, db)  # again: no duplicate
    runs = store.list_runs(path=db)
    assert [r["run_id"] for r in runs] == ["b", "a"]
    assert runs[0]["cells_failed"] == 1 and runs[1]["cells_ok"] == 1
    assert store.cell_metrics("a", db)[0]["metrics"]["steady_step_us"] == 12.5


def test_history_command_lists_indexed_runs(tmp_path, monkeypatch):
    # A store of its own: the session's store holds every other test's runs, newer than this one.
    monkeypatch.setenv("SPOTDIFF_HOME", str(tmp_path / "home"))
    store.index_run(_results("run-xyz", "2026-01-03T00:00:00"), tmp_path)
    result = run_cli("history")
    assert result.returncode == 0, result.stderr
    assert "run-xyz" in result.stdout


def test_history_on_an_empty_store(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOTDIFF_HOME", str(tmp_path / "empty"))
    result = run_cli("history")
    assert result.returncode == 0 and "no runs recorded yet" in result.stdout
