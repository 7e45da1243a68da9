"""Helpers shared by the serving tests: one tiny exported model root per test session, a server on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from spotdiff.experiment import build_experiment
from spotdiff.orchestrate import run_experiment
from spotdiff.serve.export import run_export

ONNX = "digits-torch-onnx"


def tiny_model_root(tmp_path_factory, formats=("onnx",), frameworks=("torch",)) -> Path:
    """Train one digits epoch on 128 images and export; built once per session and per selection."""
    key = "models-" + "-".join(sorted(frameworks) + sorted(formats))
    root = Path(tmp_path_factory.getbasetemp()) / key
    if (root / "export.json").is_file():
        return root
    config = {
        "tasks": ["digits"],
        "frameworks": list(frameworks),
        "threads": 1,
        "device": "cpu",
        "repeats": 1,
        "overrides": {"epochs": 1, "limit_train": 128, "limit_test": 64, "batch_size": 32},
    }
    config["modes"] = sorted({{"torch": "eager", "tensorflow": "fit", "jax": "jit"}[f] for f in frameworks})
    exp = build_experiment(config)
    _, run_dir = run_experiment(exp, Path(tmp_path_factory.mktemp("run")), render=False, index=False)
    result = run_export(run_dir, root, list(formats))
    assert not result["failures"], result["failures"]
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(root: Path, rest_port: int, grpc_port: int, timeout_s: float = 90) -> subprocess.Popen:
    """`spotdiff serve` as a child, returned once /v2/health/ready answers."""
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spotdiff",
            "serve",
            str(root),
            "--rest-port",
            str(rest_port),
            "--grpc-port",
            str(grpc_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{rest_port}/v2/health/ready", timeout=1
            ) as response:
                assert json.load(response) == {"ready": True}
                return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                stop(server)
                raise AssertionError(f"server did not start: {server.stderr.read()[-2000:]}") from None
            time.sleep(0.3)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
