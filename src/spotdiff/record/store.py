"""SQLite history of runs (default ~/.spotdiff/history.sqlite; SPOTDIFF_HOME moves it).

One row per run folder: re-indexing a folder (a run replaced with --overwrite) replaces its row.
A store that cannot be opened or written raises StoreError, one line saying how to recover.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import statistics
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from spotdiff.errors import UserError

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
    wall_s      REAL,
    fingerprint TEXT,
    PRIMARY KEY (run_id, cell_id)
);
"""

# PRAGMA user_version; 1: one run per folder (UNIQUE index on runs.path); 2: cells.wall_s and
# cells.fingerprint, from which `spotdiff run` estimates how long a cell will take.
SCHEMA_VERSION = 2
# Experiment settings that change how long a cell takes (with its id, they make its fingerprint).
DURATION_SETTINGS = ("threads", "device", "precision", "overrides", "repeats", "max_repeats",
                     "spread_bound", "repeat_budget_s", "workers", "executor")


class StoreError(UserError):
    """The history store cannot be read or written (damaged, locked, not writable)."""


def _store_error(path: Path, error: Exception) -> StoreError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError):
        return StoreError(f"the history store {path} is damaged ({reason}); move it away "
                          f"(mv {path} {path}.damaged) and the next run starts a new one")
    return StoreError(f"the history store {path} cannot be used ({reason}); "
                      f"check it, or set SPOTDIFF_HOME to another folder")


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an older store up to SCHEMA_VERSION; safe when several processes open it at once."""
    if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")  # one migrating process at a time; the others wait, then see it done
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < 1:
            # Stores from before version 1 may hold several runs of one folder: keep the last indexed.
            conn.execute("DELETE FROM runs WHERE rowid NOT IN (SELECT max(rowid) FROM runs GROUP BY path)")
            conn.execute("DELETE FROM cells WHERE run_id NOT IN (SELECT run_id FROM runs)")
            conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS runs_one_per_folder ON runs(path)")
        if version < 2:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(cells)")}
            for name, kind in (("wall_s", "REAL"), ("fingerprint", "TEXT")):
                if name not in columns:
                    conn.execute(f"ALTER TABLE cells ADD COLUMN {name} {kind}")
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def home() -> Path:
    return Path(os.environ.get("SPOTDIFF_HOME", Path.home() / ".spotdiff"))


def db_path() -> Path:
    return home() / "history.sqlite"


def connect(path: Path | None = None) -> sqlite3.Connection:
    """An open store at `path` (default db_path()), created or migrated as needed."""
    path = path or db_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path)
    except (OSError, sqlite3.Error) as error:
        raise _store_error(path, error) from None
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        conn.executescript(SCHEMA)
        _migrate(conn)
    except sqlite3.Error as error:
        conn.close()
        raise _store_error(path, error) from None
    return conn


@contextmanager
def _open(path: Path | None) -> Iterator[sqlite3.Connection]:
    """connect(), with any SQLite error on the way turned into StoreError; always closed."""
    target = path or db_path()
    conn = connect(target)
    try:
        yield conn
    except sqlite3.Error as error:
        raise _store_error(target, error) from None
    finally:
        conn.close()


def index_run(results: dict[str, Any], run_dir: Path, path: Path | None = None) -> None:
    """Insert or replace one run and its cells (idempotent: re-indexing a run updates it). A run
    indexed for a folder replaces whichever run pointed at that folder before."""
    env = results.get("environment", {})
    cells = results.get("cells", [])
    count = {s: sum(1 for c in cells if c["status"] == s) for s in ("ok", "failed", "skipped")}
    folder = str(Path(run_dir).resolve())
    with _open(path) as conn, conn:
        conn.execute("DELETE FROM cells WHERE run_id IN (SELECT run_id FROM runs WHERE path = ?)", (folder,))
        conn.execute("DELETE FROM runs WHERE path = ?", (folder,))
        conn.execute("DELETE FROM cells WHERE run_id = ?", (results["run_id"],))
        conn.execute(
            "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                results["run_id"], folder, env.get("started_at"),
                results.get("status"),
                ",".join(sorted({c["task"] for c in cells})),
                ",".join(sorted({c["framework"] for c in cells})),
                count["ok"], count["failed"], count["skipped"],
                env.get("hostname"), env.get("cpu_model"), json.dumps(env.get("frameworks", {})),
            ),
        )
        experiment = results.get("experiment") or {}
        conn.executemany(
            "INSERT INTO cells (run_id, cell_id, task, framework, mode, variant, status, metrics, "
            "wall_s, fingerprint) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                (results["run_id"], c["id"], c["task"], c["framework"], c["mode"], c["variant"],
                 c["status"], json.dumps(c.get("metrics", {})), c.get("wall_s"),
                 cell_fingerprint(c["id"], experiment))
                for c in cells
            ],
        )


def cell_fingerprint(cell_id: str, experiment: dict[str, Any]) -> str:
    """Which past cells say how long this one takes: the same id (task, framework, mode, variant,
    seed) under the same duration-relevant settings (`DURATION_SETTINGS` of the experiment)."""
    settings = {key: experiment.get(key) for key in DURATION_SETTINGS}
    blob = json.dumps({"cell": cell_id, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def past_wall_s(fingerprints: list[str], hostname: str, path: Path | None = None,
                last: int = 5) -> dict[str, float]:
    """Fingerprint -> median wall seconds of its last `last` ok runs on `hostname` (those seen)."""
    target = path or db_path()
    if not fingerprints or not target.exists():
        return {}
    marks = ",".join("?" * len(fingerprints))
    with _open(target) as conn:
        rows = conn.execute(
            f"SELECT cells.fingerprint, cells.wall_s FROM cells JOIN runs USING (run_id) "
            f"WHERE runs.hostname = ? AND cells.status = 'ok' AND cells.wall_s IS NOT NULL "
            f"AND cells.fingerprint IN ({marks}) ORDER BY runs.started_at DESC, runs.rowid DESC",
            (hostname, *fingerprints),
        ).fetchall()
    seen: dict[str, list[float]] = {}
    for fingerprint, wall_s in rows:
        if len(seen.setdefault(fingerprint, [])) < last:
            seen[fingerprint].append(wall_s)
    return {fingerprint: statistics.median(walls) for fingerprint, walls in seen.items()}


def list_runs(limit: int = 50, path: Path | None = None) -> list[dict[str, Any]]:
    """Most recent runs first."""
    target = path or db_path()
    if not target.exists():
        return []
    with _open(target) as conn:
        rows = conn.execute(
            "SELECT * FROM runs ORDER BY started_at DESC, run_id DESC LIMIT ?", (limit,)
        ).fetchall()
    return [dict(row) for row in rows]


def cell_metrics(run_id: str, path: Path | None = None) -> list[dict[str, Any]]:
    with _open(path) as conn:
        rows = conn.execute("SELECT * FROM cells WHERE run_id = ?", (run_id,)).fetchall()
    return [{**dict(row), "metrics": json.loads(row["metrics"])} for row in rows]


def cell_history(path: Path | None = None) -> list[dict[str, Any]]:
    """Every indexed cell, oldest run first: its row with `metrics` parsed, and its run's
    `started_at`, `path`, framework `versions`, `hostname` and `cpu_model`."""
    target = path or db_path()
    if not target.exists():
        return []
    with _open(target) as conn:
        rows = conn.execute(
            "SELECT cells.*, runs.started_at, runs.path, runs.versions, runs.hostname, runs.cpu_model "
            "FROM cells JOIN runs USING (run_id) "
            "ORDER BY runs.started_at, runs.rowid, cells.cell_id"
        ).fetchall()
    return [{**dict(row), "metrics": json.loads(row["metrics"] or "{}"),
             "versions": json.loads(row["versions"] or "{}")} for row in rows]
