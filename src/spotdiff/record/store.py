"""SQLite history of runs (default ~/.spotdiff/history.sqlite; SPOTDIFF_HOME moves it)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    started_at  TEXT,
    status      TEXT,
    tasks       TEXT,
    frameworks  TEXT,
    cells_ok    INTEGER,
    cells_failed INTEGER,
    cells_skipped INTEGER,
    hostname    TEXT,
    cpu_model   TEXT,
    versions    TEXT
);
CREATE TABLE IF NOT EXISTS cells (
    run_id      TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    cell_id     TEXT NOT NULL,
    task        TEXT, framework TEXT, mode TEXT, variant TEXT, status TEXT,
    metrics     TEXT,
    PRIMARY KEY (run_id, cell_id)
);
"""


def home() -> Path:
    return Path(os.environ.get("SPOTDIFF_HOME", Path.home() / ".spotdiff"))


def db_path() -> Path:
    return home() / "history.sqlite"


def connect(path: Path | None = None) -> sqlite3.Connection:
    path = path or db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.executescript(SCHEMA)
    return conn


def index_run(results: dict[str, Any], run_dir: Path, path: Path | None = None) -> None:
    """Insert or replace one run and its cells (idempotent: re-indexing a run updates it)."""
    env = results.get("environment", {})
    cells = results.get("cells", [])
    count = {s: sum(1 for c in cells if c["status"] == s) for s in ("ok", "failed", "skipped")}
    with connect(path) as conn:
        conn.execute("DELETE FROM cells WHERE run_id = ?", (results["run_id"],))
        conn.execute(
            "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                results["run_id"], str(Path(run_dir).resolve()), env.get("started_at"),
                results.get("status"),
                ",".join(sorted({c["task"] for c in cells})),
                ",".join(sorted({c["framework"] for c in cells})),
                count["ok"], count["failed"], count["skipped"],
                env.get("hostname"), env.get("cpu_model"), json.dumps(env.get("frameworks", {})),
            ),
        )
        conn.executemany(
            "INSERT INTO cells VALUES (?,?,?,?,?,?,?,?)",
            [
                (results["run_id"], c["id"], c["task"], c["framework"], c["mode"], c["variant"],
                 c["status"], json.dumps(c.get("metrics", {})))
                for c in cells
            ],
        )
    conn.close()


def list_runs(limit: int = 50, path: Path | None = None) -> list[dict[str, Any]]:
    """Most recent runs first."""
    target = path or db_path()
    if not target.exists():
        return []
    conn = connect(target)
    try:
        rows = conn.execute(
            "SELECT * FROM runs ORDER BY started_at DESC, run_id DESC LIMIT ?", (limit,)
        ).fetchall()
    finally:
        conn.close()
    return [dict(row) for row in rows]


def cell_metrics(run_id: str, path: Path | None = None) -> list[dict[str, Any]]:
    conn = connect(path)
    try:
        rows = conn.execute("SELECT * FROM cells WHERE run_id = ?", (run_id,)).fetchall()
    finally:
        conn.close()
    return [{**dict(row), "metrics": json.loads(row["metrics"])} for row in rows]
