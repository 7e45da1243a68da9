"""What a Ray task does on its node: run one cell through the local executor, send back its logs.

The cell still runs in its own child process (`python -m spotdiff.worker`, started and pinned by
`spotdiff.children`) with the local executor's timeout, crash capture and memory sampling; the Ray
task is only the parent of that child on a node of the cluster. A child whose Ray worker was killed
outlives it (it runs in its own session), so every task first reaps such orphans of the same run on
its machine, before it starts its own.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Any

import psutil

from spotdiff import children
from spotdiff.executors import local
from spotdiff.experiment import Cell

# Small files of a cell directory that travel back to the driver, whose run directory may be on
# another machine. Artifacts (TensorBoard event files, exports) stay on the node.
LOG_FILES = ("cell.json", "events.jsonl", "stderr.log", "stdout.log")
MAX_LOG_BYTES = 32 * 2**20


def fallback_cells_root(run_dir: str) -> Path:
    """Where a node keeps the cells of a run whose directory it cannot create (no shared
    filesystem, or the driver's path is not writable here)."""
    return Path(tempfile.gettempdir()) / "spotdiff-cells" / Path(run_dir).name


def node_cell_dir(run_dir: str, cell_id: str) -> Path:
    """The driver's `<run_dir>/cells/<id>` when this node can create it, else a temporary one."""
    wanted = Path(run_dir) / "cells" / cell_id
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        return wanted
    except OSError:
        fallback = fallback_cells_root(run_dir) / cell_id
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def _owned_by_a_task(process: psutil.Process) -> bool:
    """Whether a cell worker's parent is a Ray worker still running a cell (Ray titles a worker
    process `ray::<function>` while it runs a task)."""
    try:
        parent = process.parent()
        return parent is not None and parent.cmdline()[:1] == [f"ray::{run_cell_on_node.__name__}"]
    except psutil.Error:
        return False


def reap_orphans(run_dir: str) -> list[int]:
    """Kill this run's cell workers on this machine whose Ray worker is gone (killed, or lost with
    its node's raylet); their pids. Workers of cells still running, here or on another Ray node
    of the same machine, are left alone."""
    roots = (str(Path(run_dir) / "cells"), str(fallback_cells_root(run_dir)))
    killed = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "spotdiff.worker" not in cmdline or not any(a.startswith(r) for a in cmdline for r in roots):
            continue
        if _owned_by_a_task(process):
            continue
        if not children.kill_group(process.info["pid"]):  # each worker leads its own session
            continue
        killed.append(process.info["pid"])
    return killed


def remove_logs(cell_dir: Path) -> None:
    """Delete a cell folder's log files, so that a folder reused by a later run (or a node's
    fallback folder, named after the run folder) never shows an earlier run's logs."""
    for name in LOG_FILES:
        (cell_dir / name).unlink(missing_ok=True)


def _log_files(cell_dir: Path) -> dict[str, bytes]:
    files = {}
    for name in LOG_FILES:
        path = cell_dir / name
        if path.is_file() and path.stat().st_size <= MAX_LOG_BYTES:
            files[name] = path.read_bytes()
    return files


def run_cell_on_node(cell_json: str, run_dir: str, timeout_s: float) -> dict[str, Any]:
    """The body of one Ray task: {"outcome": CellOutcome, "files": {name: bytes}}.

    The outcome's environment gains `node`: the host that ran the cell and where its directory is
    there. A Ctrl-C on the driver cancels the task with a KeyboardInterrupt here, and the local
    executor kills its child on the way out.
    """
    import ray

    cell = Cell.model_validate_json(cell_json)
    reap_orphans(run_dir)
    cell_dir = node_cell_dir(run_dir, cell.id)
    remove_logs(cell_dir)
    outcome = local.run_cell(cell, cell_dir, timeout_s)
    outcome.environment["node"] = {
        "hostname": socket.gethostname(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "cell_dir": str(cell_dir),
    }
    return {"outcome": outcome, "files": _log_files(cell_dir)}
