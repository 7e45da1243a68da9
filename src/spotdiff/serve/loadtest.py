"""`spotdiff loadtest TARGET`, parent side: never imports a framework.

TARGET is a model root written by `spotdiff export` (`<name>/<version>/`), or a run directory whose
`models/` folder is one. The parent starts, as children in their own sessions: `spotdiff serve` (REST
and gRPC), the Flask baseline on waitress, the in-process timer, the LiteRT (mobile) timer and the
load generator; servers get one half of the CPUs, the load generator the other. Every child is
killed with its process group at the end, also on an error, Ctrl-C or SIGTERM. The result is a
`results.json` (the runs' schema, no cells, a `serving` block) and a `report.html`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from spotdiff import children as boundary
from spotdiff.errors import UserError
from spotdiff.serve.loadgen import PROTOCOLS
from spotdiff.serve.roots import model_root, servable
from spotdiff.serve.tuning import TUNING

SERVER_START_S = 180.0
PACKAGES = (
    "starlette",
    "uvicorn",
    "grpcio",
    "tensorflow-serving-api",
    "tritonclient",
    "Flask",
    "waitress",
    "onnxruntime",
    "ai-edge-litert",
    "httpx",
    "httptools",
)


def _cpu_halves() -> tuple[set[int] | None, set[int] | None]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


class Children:
    """The load test's children (started by `spotdiff.children`, pinned to `cpus`), all stopped
    with their process groups on close."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], cpus: set[int] | None, **kwargs) -> subprocess.Popen:
        """`python -m args[0] args[1:]`."""
        proc = boundary.start(
            args[0], args[1:], pin=boundary.Pin.on(sorted(cpus)) if cpus else None,
            env={"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}, text=True, **kwargs,
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            boundary.stop(proc)


@contextmanager
def _sigterm_interrupts():
    """SIGTERM unwinds like Ctrl-C, so the `finally` that reaps the children runs."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_ready(proc: subprocess.Popen, url: str, what: str, log: Path) -> None:
    not_ready = boundary.wait_until_ready(proc, SERVER_START_S, url=url)
    if not_ready:
        tail = boundary.stderr_tail(log, 1)
        raise UserError(f"{what} did not start: {tail or not_ready}")


def _marked(text: str, mark: str) -> list[dict]:
    return [json.loads(line[len(mark) :]) for line in text.splitlines() if line.startswith(mark)]


def _run_child(children: Children, args: list[str], cpus, timeout_s: float, log: Path) -> str:
    with open(log, "w") as err:
        proc = children.start(args, cpus, stdout=subprocess.PIPE, stderr=err)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            boundary.kill(proc)
            out, _ = proc.communicate()
        return out or ""


def loadtest_status(rows: list[dict], failures: list[dict]) -> str:
    """"complete" only when every measurement ran and every request succeeded; otherwise "degraded: ..."
    with the count of failed requests (and of measurements that did not run)."""
    sent = sum(r.get("requests") or 0 for r in rows)
    failed = sum(r.get("failed") or 0 for r in rows)
    problems = []
    if failed:
        problems.append(f"{failed} of {sent} requests failed")
    if failures:
        problems.append(f"{len(failures)} measurement{'s' if len(failures) > 1 else ''} did not run")
    return "degraded: " + "; ".join(problems) if problems else "complete"


def _comparable(row: dict | None) -> bool:
    """Enough data for a verdict: answers and figures, and no failed request skewing them."""
    return bool(row and row.get("succeeded") and not row.get("failed") and row.get("throughput_rps")
                and row.get("p99_ms"))


def _summaries(rows: list[dict], in_process: list[dict]) -> tuple[list[dict], list[dict]]:
    """The Flask comparison per model and concurrency (both sides' p99 and throughput, then the
    ratios), and the REST p50 overhead over an in-process call. No ratio from a measurement with a
    failed request or without answers."""
    by_key = {(r["model"], r["protocol"], r.get("concurrency")): r for r in rows if "error" not in r}
    ratios = []
    for (model, protocol, concurrency), ours in by_key.items():
        flask = by_key.get((model, "flask", concurrency))
        if protocol != "rest-tfserving" or not _comparable(ours) or not _comparable(flask):
            continue
        ratios.append(
            {
                "model": model,
                "concurrency": concurrency,
                "throughput_rps": ours["throughput_rps"],
                "flask_throughput_rps": flask["throughput_rps"],
                "p99_ms": ours["p99_ms"],
                "flask_p99_ms": flask["p99_ms"],
                "throughput_ratio": ours["throughput_rps"] / flask["throughput_rps"],
                "p99_ratio": ours["p99_ms"] / flask["p99_ms"],
                "throughput_at_least_flask": ours["throughput_rps"] >= flask["throughput_rps"],
                "p99_lower_than_flask": ours["p99_ms"] < flask["p99_ms"],
            }
        )
    overheads = []
    for timed in in_process:
        rest = by_key.get((timed["model"], "rest-tfserving", 1))
        if _comparable(rest) and rest.get("p50_ms") is not None:
            overhead = rest["p50_ms"] - timed["p50_ms"]
            overheads.append(
                {
                    "model": timed["model"],
                    "rest_p50_ms": rest["p50_ms"],
                    "in_process_p50_ms": timed["p50_ms"],
                    "overhead_ms": overhead,
                    "under_1ms": overhead < 1.0,
                }
            )
    return ratios, overheads


def run_loadtest(
    target: Path,
    out: Path | None = None,
    requests: int = 500,
    duration_s: float = 5.0,
    concurrency: tuple[int, ...] = (1, 4, 16),
    protocols: tuple[str, ...] = PROTOCOLS,
    models: list[str] | None = None,
    repeats: int = 200,
    render: bool = True,
) -> tuple[dict, Path]:
    """Measure every servable model over every protocol; write `out/results.json` (+ report.html)."""
    from spotdiff.record import results as results_file
    from spotdiff.record.environment import collect

    if requests < 1 or duration_s <= 0 or not concurrency or min(concurrency) < 1:
        raise UserError("--requests, --duration and every --concurrency must be positive")
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown:
        raise UserError(f"unknown protocol {', '.join(unknown)}; choose from: {', '.join(PROTOCOLS)}")
    root = model_root(Path(target))
    found = servable(root)
    missing = sorted(set(models or ()) - set(found))
    if missing:
        raise UserError(f"no model {', '.join(missing)} in {root}; there are: {', '.join(found)}")
    names = list(models or found)
    out = Path(out) if out else (root.parent / "loadtest" if root.name == "models" else root / "loadtest")
    out.mkdir(parents=True, exist_ok=True)
    server_cpus, client_cpus = _cpu_halves()
    environment = collect(threads=len(server_cpus or os.sched_getaffinity(0)), device="cpu")
    environment["serving_packages"] = {p: _version(p) for p in PACKAGES}
    serving = {
        "model_root": str(root),
        "models": {n: found[n] for n in names},
        "bounds": {"requests": requests, "duration_s": duration_s, "concurrency": list(concurrency)},
        "protocols": list(protocols),
        "cpus": {"servers": sorted(server_cpus or []), "client": sorted(client_cpus or [])},
        "flask_server": f"Flask {_version('Flask')} on waitress {_version('waitress')} (default 4 threads)",
        # the same for both servers, so that the comparison is of the servers, not of their tuning
        "process_tuning": {"spotdiff serve": TUNING, "flask": TUNING, "cpus": "both on the servers' CPUs"},
        "rows": [],
        "in_process": [],
        "mobile": [],
        "flask_ratio": [],
        "rest_overhead": [],
        "failures": [],
    }
    children = Children()
    budget_s = len(names) * len(protocols) * len(concurrency) * (duration_s + 30) + 120
    with _sigterm_interrupts():
        try:
            _measure(
                children, root, names, protocols, serving, server_cpus, client_cpus, out, budget_s, repeats
            )
        finally:
            children.close()
    serving["flask_ratio"], serving["rest_overhead"] = _summaries(serving["rows"], serving["in_process"])
    environment["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results = {
        "schema": results_file.SCHEMA_VERSION,
        "run_id": f"loadtest-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
        "status": loadtest_status(serving["rows"], serving["failures"]),
        "environment": environment,
        "experiment": {"kind": "loadtest", "target": str(target), **serving["bounds"]},
        "cells": [],
        "serving": serving,
    }
    results_file.write(out / "results.json", results)
    if render:
        from spotdiff.report.html import render_report

        render_report(results, out)
    return results, out


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _measure(children, root, names, protocols, serving, server_cpus, client_cpus, out, budget_s, repeats):
    rest_port, grpc_port, flask_port = boundary.free_ports(3)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    if not any(p.startswith("grpc") for p in protocols):
        grpc_port = 0  # gRPC off: the server then needs no TensorFlow import for an ONNX-only root
    with open(logs / "server.log", "w") as log:
        server = children.start(
            ["spotdiff", "serve", str(root), "--rest-port", str(rest_port), "--grpc-port", str(grpc_port)],
            server_cpus,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    flask = None
    if "flask" in protocols:
        with open(logs / "flask.log", "w") as log:
            flask = children.start(
                ["spotdiff.serve.flask_baseline", str(root), str(flask_port), *names],
                server_cpus,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    # the timers run while the servers load: each is alone on its CPUs only after the servers are up
    _wait_ready(
        server, f"http://127.0.0.1:{rest_port}/v2/health/ready", "spotdiff serve", logs / "server.log"
    )
    if flask:
        _wait_ready(flask, f"http://127.0.0.1:{flask_port}/health", "the Flask baseline", logs / "flask.log")
    timed = _run_child(
        children,
        ["spotdiff.serve.inprocess", str(root), str(repeats), *names],
        server_cpus,
        SERVER_START_S,
        logs / "inprocess.log",
    )
    serving["in_process"] = _marked(timed, "SPOTDIFF_INPROCESS ")
    if any(serving["models"][n]["format"] == "tflite" for n in names):
        mobile = _run_child(
            children,
            ["spotdiff.serve.mobile", str(root), str(repeats)],
            server_cpus,
            SERVER_START_S,
            logs / "mobile.log",
        )
        serving["mobile"] = [m for m in _marked(mobile, "SPOTDIFF_MOBILE ") if m["model"] in names]
    spec = {
        "models": names,
        "protocols": list(protocols),
        "concurrency": serving["bounds"]["concurrency"],
        "requests": serving["bounds"]["requests"],
        "duration_s": serving["bounds"]["duration_s"],
        "rest_port": rest_port,
        "grpc_port": grpc_port,
        "flask_port": flask_port,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    try:
        lines = _marked(
            _run_child(
                children, ["spotdiff.serve.loadgen", handle.name], client_cpus, budget_s, logs / "loadgen.log"
            ),
            "SPOTDIFF_LOAD ",
        )
    finally:
        os.unlink(handle.name)
    for line in lines:
        line.update({k: serving["models"][line["model"]][k] for k in ("framework", "format")})
        (serving["failures"] if "error" in line else serving["rows"]).append(line)
    expected = len(names) * len(protocols) * len(spec["concurrency"])
    if len(serving["rows"]) + len(serving["failures"]) * len(spec["concurrency"]) < expected:
        serving["failures"].append({"error": f"load generator stopped early: see {logs / 'loadgen.log'}"})
