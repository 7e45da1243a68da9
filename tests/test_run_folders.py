"""Nothing a user ran is overwritten: unique default folders, --out refuses a folder with a run
unless --overwrite, and bad folders or --threads are one line and exit 2."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from conftest import run_cli

from spotdiff.errors import UserError
from spotdiff.record import run_folder, store

ONE_CELL = ("exponent", "-f", "jax", "-m", "jit", "--variant", "manual", "--repeats", "1", "--device", "cpu",
            "--set", "steps=20", "--set", "block_steps=10", "--set", "warmup_steps=5")
CHEAP = (*ONE_CELL, "--threads", "1")


def _one_error_line(result) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("spotdiff: error: ")
    return line.removeprefix("spotdiff: error: ")


def _old_run(folder: Path) -> None:
    """A finished run as an earlier `spotdiff run` leaves it, indexed in the history."""
    (folder / "cells" / "old-cell").mkdir(parents=True)
    (folder / "cells" / "old-cell" / "stderr.log").write_text("the old run's log")
    (folder / "report.html").write_text("old report")
    old = {"run_id": "old-run", "status": "complete", "environment": {"started_at": "2020-01-01T00:00:00"},
           "cells": [{"id": "old-cell", "task": "exponent", "framework": "jax", "mode": "jit",
                      "variant": "manual", "status": "ok", "metrics": {}}]}
    (folder / "results.json").write_text(json.dumps(old))
    store.index_run(old, folder)


def test_default_folders_started_in_one_second_are_distinct(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folder.time, "strftime", lambda fmt: "20260101-000000")
    claimed: list[Path] = []
    racers = [threading.Thread(target=lambda: claimed.append(run_folder.claim_default(tmp_path)))
              for _ in range(6)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    names = sorted(p.name for p in claimed)
    assert names == sorted(["20260101-000000", *(f"20260101-000000-{n}" for n in range(2, 7))])
    assert all(p.is_dir() and not any(p.iterdir()) for p in claimed)


def test_an_empty_existing_folder_is_used_once(tmp_path):
    assert run_folder.claim(tmp_path) == tmp_path
    with pytest.raises(UserError, match="already holds a run .* add --overwrite"):
        run_folder.claim(tmp_path)  # a second run into the same folder, even before any cell ends


def test_a_folder_with_cells_only_holds_a_run(tmp_path):
    (tmp_path / "cells" / "c").mkdir(parents=True)
    with pytest.raises(UserError, match="already holds a run"):
        run_folder.claim(tmp_path)


def test_overwrite_never_deletes_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "mine.txt").write_text("keep")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="holds the current folder"):
        run_folder.claim(Path("."), overwrite=True)
    assert (tmp_path / "mine.txt").read_text() == "keep"


def test_out_with_a_run_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text('{"run_id": "precious"}')
    line = _one_error_line(run_cli("run", *CHEAP, "--out", str(out), timeout=120))
    assert line == (f"{out} already holds a run (results.json); choose another --out, "
                    "or add --overwrite to replace it")
    assert (out / "results.json").read_text() == '{"run_id": "precious"}'


@pytest.fixture(scope="module")
def overwritten(tmp_path_factory):
    """An old run in a folder, replaced by `spotdiff run --overwrite`, then again from a TOML key."""
    root = tmp_path_factory.mktemp("overwrite")
    home, out = root / "home", root / "run"
    os.environ["SPOTDIFF_HOME"], previous = str(home), os.environ["SPOTDIFF_HOME"]
    try:
        _old_run(out)
        flag = run_cli("run", *CHEAP, "--out", str(out), "--overwrite")
        first = json.loads((out / "results.json").read_text())
        first_rows = store.list_runs()
        config = root / "again.toml"
        config.write_text(f'overwrite = true\nout = "{out}"\n')
        toml = run_cli("run", *CHEAP, "--config", str(config))
        second = json.loads((out / "results.json").read_text())
        second_rows = store.list_runs()
    finally:
        os.environ["SPOTDIFF_HOME"] = previous
    return out, flag, first, first_rows, toml, second, second_rows


def test_overwrite_replaces_the_old_run_whole(overwritten):
    out, flag, first, first_rows, *_ = overwritten
    assert flag.returncode == 0, flag.stderr
    assert first["run_id"] != "old-run" and [c["status"] for c in first["cells"]] == ["ok"]
    assert not (out / "cells" / "old-cell").exists()  # nothing of the old run is mixed in
    assert (out / "report.html").read_text() != "old report"
    assert [(r["run_id"], r["path"]) for r in first_rows] == [(first["run_id"], str(out.resolve()))]


def test_overwrite_from_toml_keeps_one_history_row_per_folder(overwritten):
    out, _, first, _, toml, second, second_rows = overwritten
    assert toml.returncode == 0, toml.stderr
    assert second["run_id"] != first["run_id"]
    assert [(r["run_id"], r["path"]) for r in second_rows] == [(second["run_id"], str(out.resolve()))]


def test_overwrite_in_toml_must_be_a_boolean(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('overwrite = "yes"\n')
    line = _one_error_line(run_cli("run", *CHEAP, "--config", str(config), timeout=120))
    assert line == f"overwrite in {config} must be true or false, got 'yes'"


def test_out_that_cannot_be_created_is_one_line(tmp_path):
    line = _one_error_line(run_cli("run", *CHEAP, "--out", "/proc/x", timeout=120))
    assert line == "cannot create the run folder /proc/x: No such file or directory"


def test_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    line = _one_error_line(run_cli("run", *CHEAP, "--out", str(tmp_path / "a-file"), timeout=120))
    assert line == f"--out {tmp_path / 'a-file'} is a file, not a folder; choose another --out"


def test_threads_above_the_cores_are_refused(tmp_path):
    cores = len(os.sched_getaffinity(0))
    out = tmp_path / "run"
    result = run_cli("run", *ONE_CELL, "--threads", str(cores + 1), "--out", str(out), timeout=120)
    line = _one_error_line(result)
    assert line.startswith(f"--threads {cores + 1} is more than the {cores} cores this process may use; "
                           f"use --threads {cores} or fewer")
    assert not out.exists()
