"""`spotdiff loadtest`: output shape with tiny bounds, that each bound stops it, bad TARGET -> exit 2,
every child reaped after SIGTERM, failed requests counted apart, and the Flask baseline tuned as ours."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest
from conftest import require, run_cli
from serve_support import AOTI, ONNX, TORCH_MODELS, serving_root

require("flask")
require("waitress")
require("tensorflow_serving")


@pytest.fixture(scope="module")
def root(exported_models, tmp_path_factory):
    return serving_root(exported_models, tmp_path_factory)


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
    assert results["status"] == "complete"
    protocols = {"rest-tfserving", "rest-kserve", "grpc-tfserving", "grpc-kserve", "flask"}
    assert {(r["model"], r["protocol"], r["concurrency"]) for r in serving["rows"]} == {
        (m, p, c) for m in TORCH_MODELS for p in protocols for c in (1, 2)
    }
    formats = {ONNX: "onnx", AOTI: "aoti"}  # PyTorch through ONNX Runtime and through its own runtime
    for row in serving["rows"]:
        assert row["framework"] == "torch" and row["format"] == formats[row["model"]]
        assert row["requests"] == row["succeeded"] == 6 and row["failed"] == 0, row
        assert row["stopped_by"] == "requests", row
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["throughput_rps"] > 0
    assert {(r["model"], r["concurrency"]) for r in serving["flask_ratio"]} == {
        (m, c) for m in TORCH_MODELS for c in (1, 2)
    }
    rows = {(r["model"], r["protocol"], r["concurrency"]): r for r in serving["rows"]}
    for ratio in serving["flask_ratio"]:  # both sides' p99, then the ratio of exactly those
        ours, flask = rows[ratio["model"], "rest-tfserving", ratio["concurrency"]], rows[
            ratio["model"], "flask", ratio["concurrency"]
        ]
        assert ratio["p99_ms"] == ours["p99_ms"] and ratio["flask_p99_ms"] == flask["p99_ms"]
        assert ratio["p99_ratio"] == pytest.approx(ours["p99_ms"] / flask["p99_ms"])
    tuning = serving["process_tuning"]
    assert tuning["spotdiff serve"] == tuning["flask"] == "gc.collect(); gc.freeze() after loading the models"
    assert {o["model"] for o in serving["rest_overhead"]} == set(TORCH_MODELS)
    assert all(o["in_process_p50_ms"] > 0 for o in serving["rest_overhead"])
    html = (out / "report.html").read_text()
    assert "Serving: load test" in html and "Flask baseline" in html and "in-process" in html
    assert "p99 ms Flask" in html and "gc.freeze()" in html and AOTI in html


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
        models=[ONNX],
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


def test_litert_single_image_latency_and_size(exported_models, tmp_path_factory):
    """The mobile timer: every .tflite model through the LiteRT interpreter, one thread, one image."""
    root = serving_root(exported_models, tmp_path_factory, names=("digits-tensorflow-tflite",))
    done = subprocess.run([sys.executable, "-m", "spotdiff.serve.mobile", str(root), "20"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = [json.loads(line.removeprefix("SPOTDIFF_MOBILE ")) for line in done.stdout.splitlines()
              if line.startswith("SPOTDIFF_MOBILE ")]
    assert row["model"] == "digits-tensorflow-tflite" and row["threads"] == 1
    tflite = root / "digits-tensorflow-tflite" / row["version"] / "model.tflite"
    assert row["size_bytes"] == tflite.stat().st_size
    assert row["runtime"].startswith("ai-edge-litert")  # the maintained interpreter, not tf.lite's
    assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] and row["repeats"] == 20


class _FlakyHandler(BaseHTTPRequestHandler):
    """Answers two of every three requests at once with a 500, the third after 30 ms with logits."""

    protocol_version = "HTTP/1.1"
    count = 0
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 - the name http.server calls
        self.rfile.read(int(self.headers["content-length"]))
        with self.lock:
            type(self).count += 1
            fail = self.count % 3 != 0
        if not fail:
            time.sleep(0.03)
        body = json.dumps({"error": "boom"} if fail else {"predictions": [[0.0] * 10]}).encode()
        self.send_response(500 if fail else 200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_rows():
    """Real closed-loop measurements against a server that fails two requests of three."""
    from spotdiff.serve.loadgen import _rest_sender, closed_loop

    _FlakyHandler.count = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/models/m:predict"
    make_sender = _rest_sender(url, b'{"instances": [[0]]}', "predictions")
    try:
        row = closed_loop(make_sender, concurrency=1, max_requests=30, duration_s=60)
    finally:
        server.shutdown()
    return row


def test_failed_requests_are_counted_apart_and_left_out_of_latency_and_throughput(flaky_rows):
    row = flaky_rows
    assert row["requests"] == 30 and row["failed"] == 20 and row["succeeded"] == 10, row
    assert row["p50_ms"] >= 30  # only the slow successes; with the fast failures in, p50 would be ~1 ms
    assert row["throughput_rps"] == pytest.approx(10 / row["wall_s"])


def test_a_load_test_with_failed_requests_is_saved_as_degraded(flaky_rows, root, tmp_path, monkeypatch):
    from spotdiff.serve import loadtest

    def measure(children, root, names, protocols, serving, *args):
        ok = {**flaky_rows, "failed": 0, "requests": flaky_rows["succeeded"]}
        for protocol, row in (("rest-tfserving", flaky_rows), ("flask", ok)):
            serving["rows"].append({"model": ONNX, "protocol": protocol, "framework": "torch",
                                    "format": "onnx", **row})

    monkeypatch.setattr(loadtest, "_measure", measure)
    results, out = loadtest.run_loadtest(root, tmp_path / "lt", protocols=("rest-tfserving", "flask"),
                                         concurrency=(1,), models=[ONNX])
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == results["status"] == "degraded: 20 of 40 requests failed"
    assert saved["serving"]["flask_ratio"] == []  # no verdict against Flask from a degraded measurement
    assert "degraded: 20 of 40 requests failed" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    "rows,failures,status",
    [
        ([{"requests": 6, "failed": 0}], [], "complete"),
        ([{"requests": 6, "failed": 2}, {"requests": 4}], [], "degraded: 2 of 10 requests failed"),
        ([{"requests": 6, "failed": 0}], [{"error": "x"}], "degraded: 1 measurement did not run"),
        ([], [{"error": "x"}, {"error": "y"}], "degraded: 2 measurements did not run"),
    ],
)
def test_loadtest_status(rows, failures, status):
    from spotdiff.serve.loadtest import loadtest_status

    assert loadtest_status(rows, failures) == status


def test_the_flask_baseline_gets_the_same_process_tuning_as_spotdiff_serve(monkeypatch, tmp_path):
    """Both servers freeze the collector's view of what is loaded before they serve the first request."""
    import gc

    import uvicorn
    import waitress

    # app binds models.load_models when first imported: import it before the patch below, or every
    # later test in this process would build apps from the patched (empty) loader.
    from spotdiff.serve import app, flask_baseline, models, server  # noqa: F401

    frozen_at_serve = {}
    def record(key):
        return lambda served_app, **kw: frozen_at_serve.update({key: gc.get_freeze_count()})

    monkeypatch.setattr(waitress, "serve", record("flask"))
    monkeypatch.setattr(uvicorn, "run", record("ours"))
    monkeypatch.setattr(flask_baseline, "load_models", lambda root: {})
    monkeypatch.setattr(models, "load_models", lambda root: {})
    try:
        gc.unfreeze()
        flask_baseline.main([str(tmp_path), "0"])
        gc.unfreeze()
        server.serve(tmp_path, "127.0.0.1", 0, 0)
    finally:
        gc.unfreeze()
    assert frozen_at_serve["flask"] > 1000 and frozen_at_serve["ours"] > 1000, frozen_at_serve
