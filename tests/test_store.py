"""The SQLite history: indexing is idempotent, newest first, one run per folder, and `spotdiff
history` shows it; a damaged store is one line, and never costs a run its results."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from conftest import run_cli

from spotdiff.record import store


def _results(run_id, started, status="ok"):
    return {
        "run_id": run_id, "status": "complete",
        "environment": {"started_at": started, "hostname": "h", "cpu_model": "cpu",
                        "frameworks": {"jax": "0.10"}},
        "cells": [{"id": "c1", "task": "exponent", "framework": "jax", "mode": "jit", "variant": "manual",
                   "status": status, "metrics": {"steady_step_us": 12.5}}],
    }


def test_index_list_and_reindex(tmp_path):
    db = tmp_path / "h.sqlite"
    store.index_run(_results("a", "2026-01-01T00:00:00"), tmp_path / "a", db)
    store.index_run(_results("b", "2026-01-02T00:00:00", "failed"), tmp_path / "b", db)
    store.index_run(_results("a", "2026-01-01T00:00:00"), tmp_path / "a", db)  # again: no duplicate
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


def test_a_run_replacing_another_in_its_folder_replaces_its_row(tmp_path):
    db = tmp_path / "h.sqlite"
    store.index_run(_results("old", "2026-01-01T00:00:00"), tmp_path / "run", db)
    store.index_run(_results("other", "2026-01-01T00:00:00"), tmp_path / "other", db)
    store.index_run(_results("new", "2026-01-02T00:00:00", "failed"), tmp_path / "run", db)  # --overwrite
    runs = store.list_runs(path=db)
    assert sorted((r["run_id"], r["path"]) for r in runs) == [
        ("new", str((tmp_path / "run").resolve())), ("other", str((tmp_path / "other").resolve()))]
    assert store.cell_metrics("old", db) == []  # its cells went with it
    assert [c["status"] for c in store.cell_metrics("new", db)] == ["failed"]


def test_an_older_store_is_migrated_to_one_run_per_folder(tmp_path):
    db = tmp_path / "h.sqlite"
    conn = sqlite3.connect(db)  # a store as versions before the UNIQUE index wrote it
    conn.executescript(store.SCHEMA)
    for run_id, folder in (("first", "/runs/a"), ("second", "/runs/a"), ("third", "/runs/b")):
        conn.execute("INSERT INTO runs (run_id, path, started_at) VALUES (?, ?, '2026')", (run_id, folder))
        conn.execute("INSERT INTO cells (run_id, cell_id) VALUES (?, 'c1')", (run_id,))
    conn.commit()
    conn.close()
    assert sorted((r["run_id"], r["path"]) for r in store.list_runs(path=db)) == [
        ("second", "/runs/a"), ("third", "/runs/b")]  # the one indexed last for a folder stays
    assert store.cell_metrics("first", db) == []
    conn = store.connect(db)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO runs (run_id, path) VALUES ('fourth', '/runs/b')")
    conn.close()


INDEX_MANY = """
import sys
from pathlib import Path
from spotdiff.record import store
name, db = sys.argv[1], Path(sys.argv[2])
for n in range(15):
    run = {"run_id": f"{name}-{n}", "status": "complete", "environment": {}, "cells": []}
    store.index_run(run, Path(sys.argv[3]) / f"{name}-{n}", db)
"""


def test_two_processes_indexing_into_one_new_store_both_land(tmp_path):
    db = tmp_path / "h.sqlite"  # new: both processes create and migrate it at once
    writers = [subprocess.Popen([sys.executable, "-c", INDEX_MANY, name, str(db), str(tmp_path)],
                                stderr=subprocess.PIPE, text=True) for name in ("one", "two")]
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
    assert len(store.list_runs(limit=100, path=db)) == 30


@pytest.fixture
def damaged_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "history.sqlite").write_bytes(b"this is not a database, it is a note\n" * 200)
    monkeypatch.setenv("SPOTDIFF_HOME", str(home))
    return home


def test_history_on_a_damaged_store_is_one_line_and_exit_2(damaged_home):
    result = run_cli("history")
    assert result.returncode == 2
    path = damaged_home / "history.sqlite"
    assert result.stderr.strip() == (
        f"spotdiff: error: the history store {path} is damaged (file is not a database); "
        f"move it away (mv {path} {path}.damaged) and the next run starts a new one")


def test_a_run_with_a_damaged_store_keeps_its_results_and_succeeds(damaged_home, tmp_path):
    out = tmp_path / "run"
    result = run_cli("run", "exponent", "-f", "jax", "-m", "jit", "--variant", "manual", "--threads", "1",
                     "--repeats", "1", "--device", "cpu", "--set", "steps=20", "--set", "warmup_steps=5",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    path = damaged_home / "history.sqlite"
    assert result.stderr.strip().splitlines() == [
        f"spotdiff: warning: results kept in {out}, but not in the history: the history store {path} is "
        f"damaged (file is not a database); move it away (mv {path} {path}.damaged) and the next run "
        "starts a new one"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == "complete" and [c["status"] for c in saved["cells"]] == ["ok"]
    assert (out / "report.html").exists()
    assert path.read_bytes().startswith(b"this is not a database")  # left for the user to look at
