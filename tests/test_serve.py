"""Export the trained digit models, check parity, and serve them over TF Serving REST and KServe v2."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from conftest import require, run_cli

from spotdiff.serve.export import ALL_FORMATS

require("starlette")
require("onnxruntime")

ONNX = "digits-torch-onnx"
GOOD = np.zeros((2, 28, 28, 1)).tolist()


@pytest.fixture(scope="module")
def exported(exported_models):
    """Every format exported from the default-size digits run tests/test_digits.py checks (conftest:
    the other serving tests serve parts of this export); export takes the first ok cell of each
    framework."""
    return exported_models


@pytest.fixture(scope="module")
def client(exported):
    from starlette.testclient import TestClient

    from spotdiff.serve.app import build_app

    return TestClient(build_app(exported[1]))


def test_every_format_exports_with_parity(exported):
    result, root = exported
    assert not result["failures"], result["failures"]
    assert sorted(a["format"] for a in result["artefacts"]) == sorted(ALL_FORMATS)
    for artefact in result["artefacts"]:
        assert artefact["parity_ok"], artefact
        assert artefact["size_bytes"] > 0 and artefact["export_s"] > 0
    assert json.loads((root / "export.json").read_text())["artefacts"]
    (aoti,) = [a for a in result["artefacts"] if a["format"] == "aoti"]
    assert aoti["name"] == "digits-torch-aoti" and (root / aoti["path"]).name == "model.aoti.pt2"
    assert 0 < aoti["compile_s"] < aoti["export_s"]  # tracing by torch.export, then the C++ compile
    assert (root / "digits-torch-pt2" / "1" / "model.pt2").is_file()  # the plain program stays


def test_export_never_replaces_a_version_without_force(exported, tmp_path):
    result, root = exported
    out = tmp_path / "models"
    (out / "digits-torch-onnx" / "1").mkdir(parents=True)
    mine = out / "digits-torch-onnx" / "1" / "model.onnx"
    mine.write_bytes(b"a model a user already serves")
    refused = run_cli("export", result["run_dir"], "--formats", "onnx", "--out", str(out))
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert "version 1 of digits-torch-onnx already exists" in lines[0] and "--force" in lines[0]
    assert mine.read_bytes() == b"a model a user already serves" and not (out / "export.json").exists()
    forced = run_cli("export", result["run_dir"], "--formats", "onnx", "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert mine.read_bytes()[:4] != b"a mo" and mine.stat().st_size > 1000  # a real ONNX model now
    (row,) = json.loads((out / "export.json").read_text())["artefacts"]
    assert row["name"] == "digits-torch-onnx" and row["parity_ok"]


@pytest.mark.parametrize(
    "target,message",
    [("missing", "no such directory"), ("empty", "no servable model"), ("run", "spotdiff export RUN_DIR")],
)
def test_serve_refuses_a_folder_without_models_before_listening(tmp_path, target, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text('{"cells": []}')
    port = _free_port()
    done = run_cli("serve", str(tmp_path / target), "--rest-port", str(port), "--grpc-port", "0", timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("spotdiff: error:") and message in lines[0]


def test_the_parent_imports_no_framework():
    code = (
        "import sys, spotdiff.serve.export, spotdiff.serve.cli, spotdiff.serve.roots; "
        "print([m for m in ('torch','tensorflow','jax') if m in sys.modules])"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", code], check=False, capture_output=True, text=True
        ).stdout.strip()
        == "[]"
    )


@pytest.mark.parametrize(
    "name",
    [
        "digits-torch-onnx",
        "digits-torch-aoti",
        "digits-tensorflow-savedmodel",
        "digits-tensorflow-tflite",
        "digits-tensorflow-onnx",
        "digits-jax-export",
        "digits-jax-savedmodel",
    ],
)
def test_both_protocols_predict(client, name):
    assert client.get(f"/v1/models/{name}").json()["model_version_status"][0]["state"] == "AVAILABLE"
    assert "serving_default" in json.dumps(client.get(f"/v1/models/{name}/versions/1/metadata").json())
    rows = client.post(f"/v1/models/{name}:predict", json={"instances": GOOD}).json()["predictions"]
    columns = client.post(f"/v1/models/{name}/versions/1:predict", json={"inputs": {"images": GOOD}}).json()[
        "outputs"
    ]
    v2 = client.post(
        f"/v2/models/{name}/infer",
        json={
            "inputs": [
                {
                    "name": "images",
                    "shape": [2, 28, 28, 1],
                    "datatype": "FP32",
                    "data": np.zeros(2 * 784).tolist(),
                }
            ]
        },
    ).json()
    assert np.array(rows).shape == (2, 10) and np.allclose(rows, columns)
    assert v2["outputs"][0]["shape"] == [2, 10] and np.allclose(
        np.reshape(v2["outputs"][0]["data"], (2, 10)), rows, atol=1e-5
    )
    assert client.get(f"/v2/models/{name}/ready").json()["ready"]
    assert client.get(f"/v2/models/{name}/versions/1").json()["name"] == name


def test_health(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


def _v2(data, shape=(1, 28, 28, 1), datatype="FP32"):
    return {"inputs": [{"name": "images", "shape": list(shape), "datatype": datatype, "data": data}]}


BAD = [
    ("malformed json", "POST", f"/v1/models/{ONNX}:predict", b"{not json", 400),
    ("malformed json v2", "POST", f"/v2/models/{ONNX}/infer", b"[1, 2", 400),
    ("wrong shape", "POST", f"/v1/models/{ONNX}:predict", {"instances": np.zeros((1, 27, 28)).tolist()}, 400),
    ("wrong shape v2", "POST", f"/v2/models/{ONNX}/infer", _v2([0.0] * 783), 400),
    ("wrong dtype", "POST", f"/v1/models/{ONNX}:predict", {"instances": [[["a"] * 28] * 28]}, 400),
    ("wrong dtype v2", "POST", f"/v2/models/{ONNX}/infer", _v2([0] * 784, datatype="BYTES"), 400),
    (
        "nan",
        "POST",
        f"/v1/models/{ONNX}:predict",
        b'{"instances": [[' + b",".join([b"[" + b",".join([b"NaN"] * 28) + b"]"] * 28) + b"]]}",
        400,
    ),
    (
        "infinity v2",
        "POST",
        f"/v2/models/{ONNX}/infer",
        b'{"inputs": [{"name": "images", "shape": [1, 784], "datatype": "FP32", "data": ['
        + b",".join([b"Infinity"] * 784)
        + b"]}]}",
        400,
    ),
    (
        "too many instances",
        "POST",
        f"/v1/models/{ONNX}:predict",
        {"instances": np.zeros((257, 28, 28)).tolist()},
        400,
    ),
    ("body too large", "POST", f"/v1/models/{ONNX}:predict", b" " * (8 * 1024 * 1024 + 1), 413),
    ("unknown model", "POST", "/v1/models/nope:predict", {"instances": GOOD}, 404),
    ("unknown version", "GET", f"/v1/models/{ONNX}/versions/7", None, 404),
    ("unknown model v2", "GET", "/v2/models/nope", None, 404),
    ("unknown version v2", "POST", f"/v2/models/{ONNX}/versions/7/infer", _v2([0.0] * 784), 404),
    ("path-like name", "GET", "/v1/models/..%2F..%2Fetc", None, 400),
    ("path-like name v2", "POST", "/v2/models/..%2Fetc/infer", _v2([0.0] * 784), 404),  # decoded: no route
    ("dot name v2", "POST", "/v2/models/.env/infer", _v2([0.0] * 784), 400),
    ("unknown route", "GET", "/v3/nothing", None, 404),
]


@pytest.mark.parametrize("case,method,path,body,status", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_json_error_and_serving_goes_on(client, case, method, path, body, status):
    kwargs = {"content": body} if isinstance(body, bytes) else ({"json": body} if body is not None else {})
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert isinstance(response.json()["error"], str)
    good = client.post(f"/v1/models/{ONNX}:predict", json={"instances": GOOD})
    assert good.status_code == 200 and len(good.json()["predictions"]) == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_real_server_on_loopback(exported):
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spotdiff",
            "serve",
            str(exported[1]),
            "--rest-port",
            str(port),
            "--grpc-port",
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/v2/health/ready", timeout=1
                ) as response:
                    assert json.load(response) == {"ready": True}
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/{ONNX}:predict",
            data=json.dumps({"instances": GOOD}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert np.array(json.load(response)["predictions"]).shape == (2, 10)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
