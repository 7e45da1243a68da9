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
from spotdiff.serve.models import LOADERS, NAME_RE

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


def model_root(target: Path) -> Path:
    """The model root TARGET names (itself, or a run directory's `models/`); a UserError if none."""
    if not target.is_dir():
        raise UserError(f"no such directory: {target}; pass a model root or a run directory")
    root = target / "models" if (target / "results.json").is_file() else target
    if not servable(root):
        hint = "run `spotdiff export RUN_DIR` first" if root != target else "write one with `spotdiff export`"
        raise UserError(f"no servable model (<name>/<version>/model.*) in {root}; {hint}")
    return root


def servable(root: Path) -> dict[str, dict]:
    """Name -> {framework, format} for the latest version of each model the server can load."""
    exported = {}
    if (root / "export.json").is_file():
        exported = {a["name"]: a for a in json.loads((root / "export.json").read_text()).get("artefacts", [])}
    found: dict[str, dict] = {}
    for version_dir in sorted(root.glob("*/*"), key=lambda p: (p.parent.name, p.name.zfill(12))):
        name = version_dir.parent.name
        if not (NAME_RE.match(name) and version_dir.name.isdigit()):
            continue
        for filename, (fmt, _) in LOADERS.items():
            if (version_dir / filename).is_file():
                parts = name.split("-")
                framework = exported.get(name, {}).get("framework") or (parts[1] if len(parts) > 2 else "?")
                found[name] = {"framework": framework, "format": fmt, "version": int(version_dir.name)}
                break
    return found


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


def _summaries(rows: list[dict], in_process: list[dict]) -> tuple[list[dict], list[dict]]:
    """The Flask ratio per model and concurrency, and the REST p50 overhead over an in-process call."""
    by_key = {(r["model"], r["protocol"], r.get("concurrency")): r for r in rows if "error" not in r}
    ratios = []
    for (model, protocol, concurrency), ours in by_key.items():
        flask = by_key.get((model, "flask", concurrency))
        if (
            protocol != "rest-tfserving"
            or not flask
            or not flask.get("throughput_rps")
            or not flask.get("p99_ms")
        ):
            continue
        ratios.append(
            {
                "model": model,
                "concurrency": concurrency,
                "throughput_ratio": (ours["throughput_rps"] or 0) / flask["throughput_rps"],
                "p99_ratio": (ours["p99_ms"] or 0) / flask["p99_ms"],
                "throughput_at_least_flask": (ours["throughput_rps"] or 0) >= flask["throughput_rps"],
                "p99_lower_than_flask": (ours["p99_ms"] or 0) < flask["p99_ms"],
            }
        )
    overheads = []
    for timed in in_process:
        rest = by_key.get((timed["model"], "rest-tfserving", 1))
        if rest and rest.get("p50_ms") is not None:
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
        "status": "complete",
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
