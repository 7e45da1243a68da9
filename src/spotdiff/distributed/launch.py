"""Start a data-parallel process group on this machine, wait for it, reap it, collect its results.

The ranks are started by `spotdiff.children` (each pinned to its share of cores before anything is
imported) as children of the cell's worker, in its session, so the local executor's kill of that
session reaches them whatever happens (timeout, crash, Ctrl-C). Here, the first rank to fail takes the
others down at once: a peer left waiting in an all-reduce would otherwise hang until the cell
timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spotdiff import children
from spotdiff.distributed.plan import GroupPlan

POLL_S = 0.05
STDERR_TAIL_LINES = 12


class GroupFailed(RuntimeError):
    """A rank crashed, was killed, or ended without a result; the message says which and why."""


@dataclass
class GroupResult:
    plan: GroupPlan
    ranks: list[dict[str, Any]]  # each rank's result.json, by rank
    wall_s: float


def split_cores(cores: list[int], workers: int) -> list[list[int]]:
    """An equal share of `cores` per worker (the remainder stays unused, so shares are equal)."""
    share = len(cores) // workers
    if share < 1:
        raise ValueError(f"{workers} workers need at least {workers} cores, got {len(cores)}")
    return [cores[r * share:(r + 1) * share] for r in range(workers)]


def reap(processes: list[subprocess.Popen]) -> None:
    """SIGKILL every rank still alive and anything it started, then wait for them."""
    for proc in processes:
        children.kill(proc)


def _rank_env(device: str) -> dict[str, str]:
    env = {"GLOO_SOCKET_IFNAME": "lo"}  # PyTorch's gloo: loopback only
    if device == "cpu":
        env.update({"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"})
    env["TF_CPP_MIN_LOG_LEVEL"] = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _failure(rank: int, proc: subprocess.Popen, rank_dir: Path) -> str:
    error_path = rank_dir / "error.json"
    if error_path.exists():
        error = json.loads(error_path.read_text(encoding="utf-8"))
        return f"rank {rank} failed: {error['type']}: {error['message']}"
    if children.signal_name(proc.returncode):
        return children.death_reason(proc.returncode, what=f"rank {rank} was")
    return f"rank {rank} exited with code {proc.returncode} without a result"


def run_group(plan: GroupPlan) -> GroupResult:
    """Run every rank of `plan` to the end; GroupFailed (all ranks reaped) when any of them fails."""
    out_dir = Path(plan.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan.launch_walltime = time.time()
    plan_path = out_dir / "plan.json"
    plan.save(plan_path)
    start = time.perf_counter()
    processes: list[subprocess.Popen] = []
    with ExitStack() as files:
        try:
            for rank in range(plan.workers):
                rank_dir = out_dir / f"rank{rank}"
                rank_dir.mkdir(exist_ok=True)
                stderr = files.enter_context(open(rank_dir / "stderr.log", "wb"))
                stdout = files.enter_context(open(rank_dir / "stdout.log", "wb"))
                processes.append(children.start(
                    "spotdiff.distributed.rank", [plan_path, rank], pin=children.Pin.on(plan.cores[rank]),
                    env=_rank_env(plan.device), own_session=False, stdout=stdout, stderr=stderr,
                ))
            failure = None
            while failure is None and any(p.poll() is None for p in processes):
                for rank, proc in enumerate(processes):
                    if proc.poll() not in (None, 0):
                        failure = _failure(rank, proc, out_dir / f"rank{rank}")
                        tail = children.stderr_tail(out_dir / f"rank{rank}" / "stderr.log", STDERR_TAIL_LINES)
                        print(f"--- {failure}; its stderr ends:\n{tail}", file=sys.stderr, flush=True)
                        break
                time.sleep(POLL_S)
        finally:
            reap(processes)  # on success a no-op; on failure or an exception here, nobody is left
    if failure is None:
        for rank, proc in enumerate(processes):
            if not (out_dir / f"rank{rank}" / "result.json").exists():
                failure = _failure(rank, proc, out_dir / f"rank{rank}")
                break
    if failure is not None:
        raise GroupFailed(f"data-parallel group of {plan.workers} ({plan.framework}): {failure}")
    ranks = [
        json.loads((out_dir / f"rank{r}" / "result.json").read_text(encoding="utf-8"))
        for r in range(plan.workers)
    ]
    return GroupResult(plan, ranks, time.perf_counter() - start)
