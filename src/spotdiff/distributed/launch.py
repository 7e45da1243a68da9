"""Start a data-parallel process group on this machine, wait for it, reap it, collect its results.

The ranks are children of the cell's worker and stay in its session, so the runner's `killpg`
reaches them whatever happens (timeout, crash, Ctrl-C). Here, the first rank to fail takes the
others down at once: a peer left waiting in an all-reduce would otherwise hang until the cell
timeout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from spotdiff.distributed.plan import GroupPlan

POLL_S = 0.05
STDERR_TAIL_LINES = 12
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


class GroupFailed(RuntimeError):
    """A rank crashed, was killed, or ended without a result; the message says which and why."""


@dataclass
class GroupResult:
    plan: GroupPlan
    ranks: list[dict[str, Any]]  # each rank's result.json, by rank
    wall_s: float


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now (the OS picks them; held together so they differ)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def split_cores(cores: list[int], workers: int) -> list[list[int]]:
    """An equal share of `cores` per worker (the remainder stays unused, so shares are equal)."""
    share = len(cores) // workers
    if share < 1:
        raise ValueError(f"{workers} workers need at least {workers} cores, got {len(cores)}")
    return [cores[r * share:(r + 1) * share] for r in range(workers)]


def reap(processes: list[subprocess.Popen]) -> None:
    """SIGKILL every rank still alive and anything it started, then wait for them."""
    for proc in processes:
        if proc.poll() is None:
            try:
                victims = psutil.Process(proc.pid).children(recursive=True)
            except psutil.Error:
                victims = []
            for victim in [*victims]:
                try:
                    victim.kill()
                except psutil.Error:
                    pass
            proc.kill()
    for proc in processes:
        proc.wait()


def _tail(path: Path) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-STDERR_TAIL_LINES:])


def _rank_env(threads: int, device: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in THREAD_ENV_VARS:
        env[name] = str(threads)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
    env["GLOO_SOCKET_IFNAME"] = "lo"  # PyTorch's gloo: loopback only
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _failure(rank: int, proc: subprocess.Popen, rank_dir: Path) -> str:
    error_path = rank_dir / "error.json"
    if error_path.exists():
        error = json.loads(error_path.read_text(encoding="utf-8"))
        return f"rank {rank} failed: {error['type']}: {error['message']}"
    if proc.returncode is not None and proc.returncode < 0:
        return f"rank {rank} was killed by signal {-proc.returncode}"
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
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "spotdiff.distributed.rank", str(plan_path), str(rank)],
                    stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                    env=_rank_env(len(plan.cores[rank]), plan.device),
                ))
            failure = None
            while failure is None and any(p.poll() is None for p in processes):
                for rank, proc in enumerate(processes):
                    if proc.poll() not in (None, 0):
                        failure = _failure(rank, proc, out_dir / f"rank{rank}")
                        tail = _tail(out_dir / f"rank{rank}" / "stderr.log")
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
    ranks = [json.loads((out_dir / f"rank{r}" / "result.json").read_text(encoding="utf-8")) for r in range(plan.workers)]
    return GroupResult(plan, ranks, time.perf_counter() - start)
