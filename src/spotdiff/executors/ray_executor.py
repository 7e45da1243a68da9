"""The Ray executor: cells run as Ray tasks spread over a cluster, each alone on its node.

Every cell measures time, so no two cells may share a node. The driver assigns each cell to a
free node itself and the task asks for all of that node's CPUs (node affinity, not soft): Ray
then keeps any other work off the node, with no custom resource to declare when the cluster is
started, and the driver always knows where a lost cell's orphaned worker has to be reaped. A
cell that may use a GPU (device gpu or auto) also asks for one when its node has any.

Failures stay cell failures: a Ray worker or node lost mid-cell (WorkerCrashedError,
NodeDiedError, ...) becomes a failed cell with Ray's reason, and the run goes on. Tasks are not
retried: a timed cell that ran twice is no longer the measurement asked for.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from spotdiff.errors import UserError
from spotdiff.executors import ray_task
from spotdiff.executors.local import CellOutcome
from spotdiff.experiment import Cell

WAIT_S = 1.0  # how often the driver looks for finished cells and freed nodes
CANCEL_GRACE_S = 15.0  # after Ctrl-C, how long cancelled cells get to kill their workers
CONNECT_TIMEOUT_S = 5.0
REAP_TIMEOUT_S = 30.0  # how long a lost cell's node may take to kill its orphaned worker


def _check_reachable(address: str) -> None:
    """Ray retries an unreachable address for minutes; fail at once instead."""
    if address == "auto":  # Ray finds the cluster started on this machine, or says it has none
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"bad --address {address!r}: expected HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise UserError(f"cannot reach the Ray cluster at {address}: {error.strerror or error}") from None


def _connect(address: str | None) -> None:
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address is None:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray.init(address="local", num_cpus=os.cpu_count(), **quiet)
        else:
            _check_reachable(address)
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as error:
        ray.shutdown()
        where = "start a local Ray" if address is None else f"connect to the Ray cluster at {address}"
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        hint = "" if address is None else " (if it uses token authentication, set RAY_AUTH_MODE=token)"
        raise UserError(f"cannot {where}: {first_line}{hint}") from None


def _alive_nodes() -> dict[str, dict[str, float]]:
    """node id -> its total resources, for the nodes alive now."""
    return {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}


def _free_node(cell: Cell, nodes: dict[str, dict[str, float]], busy: set[str]) -> str | None:
    """A node with no cell running and enough CPUs for `cell`. A cell that may use a GPU (device
    gpu or auto) waits for a GPU node when the cluster has any, as `auto` picks a GPU locally."""
    fits = {n: r for n, r in nodes.items() if r.get("CPU", 0) >= cell.threads}
    with_gpu = {n: r for n, r in fits.items() if r.get("GPU", 0) >= 1}
    candidates = with_gpu if cell.device != "cpu" and with_gpu else fits
    return next((n for n in candidates if n not in busy), None)


def _lost(cell: Cell, error: BaseException, node: str) -> CellOutcome:
    if isinstance(error, ray.exceptions.RayTaskError):  # the task itself raised: a spotdiff bug
        cause = error.cause if error.cause is not None else error
        first_line = (str(cause).strip().splitlines() or [""])[0]
        reason = f"the Ray task failed on node {node[:8]}: {type(cause).__name__}: {first_line}"
    else:
        first_line = (str(error).strip().splitlines() or [""])[0]
        reason = f"lost on Ray node {node[:8]}: {type(error).__name__}: {first_line}"
    return CellOutcome(cell, "failed", error=reason)


class RayExecutor:
    """Runs cells as Ray tasks; connects in the constructor, disconnects in `close()`.

    Without an address it starts a local Ray with this machine's CPUs. A Ray session that the
    caller already started (`ray.init(...)` before `spotdiff.run`) is used as it is and left open.
    """

    def __init__(self, address: str | None):
        self.address = address
        self.owns_session = not ray.is_initialized()
        if self.owns_session:
            _connect(address)
        self._run_remote = ray.remote(ray_task.run_cell_on_node)
        self._reap_remote = ray.remote(ray_task.reap_orphans)

    def describe(self) -> dict[str, Any]:
        nodes = _alive_nodes()
        return {
            "name": "ray", "ray": ray.__version__, "address": self.address or "local",
            "nodes": len(nodes), "cpus": sum(r.get("CPU", 0) for r in nodes.values()),
            "gpus": sum(r.get("GPU", 0) for r in nodes.values()),
        }

    def close(self) -> None:
        if self.owns_session and ray.is_initialized():
            ray.shutdown()

    def _submit(self, cell: Cell, node: str, resources: dict[str, float], run_dir: Path, timeout_s: float):
        gpus = 1 if cell.device != "cpu" and resources.get("GPU", 0) >= 1 else 0
        return self._run_remote.options(
            num_cpus=resources["CPU"], num_gpus=gpus, max_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        ).remote(cell.model_dump_json(), str(run_dir), timeout_s)

    def _reap(self, node: str, run_dir: Path) -> None:
        """Kill a lost cell's orphaned worker on `node` before the node takes another timed cell.
        A node that is gone fails the reaper at once."""
        reaper = self._reap_remote.options(
            num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        ).remote(str(run_dir))
        ray.wait([reaper], timeout=REAP_TIMEOUT_S)

    def _collect(self, ref, cell: Cell, node: str, run_dir: Path) -> CellOutcome:
        try:
            answer = ray.get(ref)
        except ray.exceptions.RayError as error:
            self._reap(node, run_dir)
            return _lost(cell, error, node)
        cell_dir = run_dir / "cells" / cell.id
        cell_dir.mkdir(parents=True, exist_ok=True)
        for name, data in answer["files"].items():  # this run's logs, also from a node without our filesystem
            (cell_dir / name).write_bytes(data)
        return answer["outcome"]

    def run_cells(
        self, cells: list[Cell], run_dir: Path, timeout_s: float,
        on_start: Callable[[Cell], None] = lambda cell: None,
        on_done: Callable[[CellOutcome], None] = lambda outcome: None,
    ) -> list[CellOutcome]:
        """Run every cell, as many at once as there are free nodes that fit one; each outcome goes
        to `on_done` as it completes. Ctrl-C cancels the running cells, then re-raises."""
        run_dir = Path(run_dir).resolve()
        pending, running, outcomes = deque(cells), {}, []
        try:
            while pending or running:
                nodes = _alive_nodes()
                while pending and (node := _free_node(pending[0], nodes, {n for _, n in running.values()})):
                    cell = pending.popleft()
                    on_start(cell)
                    ray_task.remove_logs(run_dir / "cells" / cell.id)  # a lost cell shows no older logs
                    running[self._submit(cell, node, nodes[node], run_dir, timeout_s)] = (cell, node)
                if not running:  # nothing runs and nothing fits: no node can take these cells
                    largest = max((r.get("CPU", 0) for r in _alive_nodes().values()), default=0)
                    while pending:
                        cell = pending.popleft()
                        on_start(cell)
                        outcome = CellOutcome(cell, "failed", error=(
                            f"no Ray node has {cell.threads} CPUs for --threads {cell.threads} "
                            f"(largest: {largest:g}); lower --threads or add bigger nodes"))
                        outcomes.append(outcome)
                        on_done(outcome)
                    break
                done, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_S)
                for ref in done:
                    cell, node = running.pop(ref)
                    outcome = self._collect(ref, cell, node, run_dir)
                    outcomes.append(outcome)
                    on_done(outcome)
        except KeyboardInterrupt:
            self._cancel(running, run_dir)
            raise
        return outcomes

    def _cancel(self, running: dict, run_dir: Path) -> None:
        """Interrupt the running cells (their runner kills each worker), then force what is left."""
        for ref in running:
            ray.cancel(ref)
        deadline = time.monotonic() + CANCEL_GRACE_S
        left = list(running)
        while left and time.monotonic() < deadline:
            _, left = ray.wait(left, num_returns=len(left), timeout=WAIT_S)
        for ref in left:
            ray.cancel(ref, force=True)
            self._reap(running[ref][1], run_dir)
