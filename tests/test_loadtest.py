"""`spotdiff loadtest`: output shape with tiny bounds, that each bound stops it, bad TARGET -> exit 2,
and every child reaped after SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from conftest import run_cli
from serve_support import ONNX, tiny_model_root

pytest.importorskip("flask")
pytest.importorskip("waitress")
pytest.importorskip("tensorflow_serving")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tiny_model_root(tmp_path_factory)


def test_every_protocol_and_the_flask_baseline_within_the_request_bound(root, tmp_path):
    out = tmp_path / "lt"
    done = run_cli(
        "loadtest",
        str(root),
        "--requests",
        "6",
        "--duration",
        "20",
        "--concurrency",
        "1,2",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    serving = results["serving"]
    assert results["cells"] == [] and results["environment"]["serving_packages"]["grpcio"]
    assert not serving["failures"], serving["failures"]
    protocols = {"rest-tfserving", "rest-kserve", "grpc-tfserving", "grpc-kserve", "flask"}
    assert {(r["protocol"], r["concurrency"]) for r in serving["rows"]} == {
        (p, c) for p in protocols for c in (1, 2)
    }
    for row in serving["rows"]:
        assert row["model"] == ONNX and row["framework"] == "torch" and row["format"] == "onnx"
        assert row["requests"] == 6 and row["errors"] == 0 and row["stopped_by"] == "requests", row
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["throughput_rps"] > 0
    assert {r["concurrency"] for r in serving["flask_ratio"]} == {1, 2}
    (overhead,) = serving["rest_overhead"]
    assert overhead["model"] == ONNX and overhead["in_process_p50_ms"] > 0
    html = (out / "report.html").read_text()
    assert "Serving: load test" in html and "Flask baseline" in html and "in-process" in html


def test_the_duration_bound_stops_it(root, tmp_path):
    from spotdiff.serve.loadtest import run_loadtest

    start = time.monotonic()
    results, _ = run_loadtest(
        root,
        tmp_path / "lt",
        requests=10**9,
        duration_s=0.5,
        concurrency=(1,),
        protocols=("rest-tfserving",),
        repeats=10,
        render=False,
    )
    (row,) = results["serving"]["rows"]
    assert row["stopped_by"] == "duration" and row["wall_s"] < 3 and row["requests"] > 0
    assert time.monotonic() - start < 120


def test_children_are_reaped_on_sigterm(root, tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spotdiff",
            "loadtest",
            str(root),
            "--duration",
            "60",
            "--requests",
            "1000000",
            "--protocols",
            "rest-tfserving",
            "--concurrency",
            "1",
            "--out",
            str(tmp_path / "lt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parent = psutil.Process(proc.pid)
    deadline, seen = time.monotonic() + 90, set()
    while time.monotonic() < deadline and not any("loadgen" in " ".join(c.cmdline()) for c in _alive(seen)):
        seen |= {c for c in parent.children(recursive=True)}
        time.sleep(0.2)
    seen |= set(parent.children(recursive=True))
    assert len(seen) >= 2, "the server and load generator never started"
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    _, alive = psutil.wait_procs(list(seen), timeout=15)
    assert not alive, [c.cmdline() for c in alive]


def _alive(procs):
    out = []
    for proc in procs:
        try:
            if proc.is_running():
                proc.cmdline()
                out.append(proc)
        except psutil.Error:
            pass
    return out


def test_the_parent_imports_no_framework():
    code = (
        "import sys, spotdiff.serve.loadtest, spotdiff.report.serving; "
        "print([m for m in ('torch', 'tensorflow', 'jax', 'onnxruntime') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["/nonexistent/models"], "no such directory"),
        (["{empty}"], "no servable model"),
        (["{run}"], "run `spotdiff export RUN_DIR` first"),
        (["{root}", "--models", "nope"], "no model nope"),
        (["{root}", "--concurrency", "1,x"], "--concurrency"),
        (["{root}", "--requests", "0"], "must be positive"),
        (["{root}", "--protocols", "smoke-signals"], "unknown protocol"),
    ],
    ids=[
        "missing",
        "empty",
        "run-without-models",
        "unknown-model",
        "bad-concurrency",
        "zero-requests",
        "unknown-protocol",
    ],
)
def test_bad_target_or_option_is_one_line_and_exit_2(root, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text('{"cells": []}')
    paths = {"{empty}": str(tmp_path / "empty"), "{run}": str(tmp_path / "run"), "{root}": str(root)}
    done = run_cli("loadtest", *[paths.get(a, a) for a in args])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spotdiff: error:") and message in lines[0], done.stderr


def test_litert_single_image_latency_and_size(tmp_path_factory):
    """The mobile timer: every .tflite model through the LiteRT interpreter, one thread, one image."""
    root = tiny_model_root(tmp_path_factory, formats=("tflite",), frameworks=("tensorflow",))
    done = subprocess.run([sys.executable, "-m", "spotdiff.serve.mobile", str(root), "20"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = [json.loads(line.removeprefix("SPOTDIFF_MOBILE ")) for line in done.stdout.splitlines()
              if line.startswith("SPOTDIFF_MOBILE ")]
    assert row["model"] == "digits-tensorflow-tflite" and row["threads"] == 1
    assert row["size_bytes"] == (root / "digits-tensorflow-tflite" / row["version"] / "model.tflite").stat().st_size
    assert row["runtime"].startswith("ai-edge-litert")  # the maintained interpreter, not tf.lite's
    assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] and row["repeats"] == 20
