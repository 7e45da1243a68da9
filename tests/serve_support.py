"""Helpers shared by the serving tests: model roots cut from the session's one export
(conftest.exported_models), a server on loopback, and the trained model's own logits on real digits
test images (the oracle for served ones)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ONNX = "digits-torch-onnx"
AOTI = "digits-torch-aoti"
TORCH_MODELS = (ONNX, AOTI)  # PyTorch through ONNX Runtime and through its own runtime (AOTInductor)


def serving_root(exported_models: tuple[dict, Path], tmp_path_factory, names=TORCH_MODELS) -> Path:
    """A model root holding only the models `names` of the session's export, copied, and their rows
    of its export.json: what `spotdiff export --formats ...` of that run writes. Once per session."""
    result, full = exported_models
    root = Path(tmp_path_factory.getbasetemp()) / ("models-" + "-".join(sorted(names)))
    if (root / "export.json").is_file():
        return root
    export = json.loads((full / "export.json").read_text())
    export["artefacts"] = [a for a in export["artefacts"] if a["name"] in names]
    assert sorted(a["name"] for a in export["artefacts"]) == sorted(names), result["failures"]
    for name in names:
        shutil.copytree(full / name, root / name)
    (root / "export.json").write_text(json.dumps(export, indent=1))  # last: it marks the root complete
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
        start_new_session=True,  # `spotdiff serve` and its server child: one group to stop
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
    """SIGTERM to `spotdiff serve` (it stops its server child), SIGKILL to the group if that hangs."""
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


# The oracle: the framework's own in-process prediction from the cell's saved weights, in a child.
_TORCH_LOGITS = """
import json, sys
from pathlib import Path
import numpy as np, torch
from spotdiff.backends.torch import weights
from spotdiff.tasks.digits import torch_impl
from spotdiff.tasks.digits.spec import DigitsParams, test_images

cell_dir, count, out = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cell = json.loads((cell_dir / "cell.json").read_text())
params = DigitsParams(**cell["params"])
images = test_images(params, cell["seed"])[0][:count].astype(np.float32)  # (count, 28, 28)
model = torch_impl.build_model(params, None, "random", dropout=False).eval()
with np.load(cell_dir / "weights.npz") as npz:
    weights.load_neutral(model, {k: npz[k] for k in npz.files})
with torch.no_grad():
    logits = model(torch.from_numpy(images[:, None])).numpy()  # (count, 10)
np.savez(out, images=images, logits=logits)
"""


def torch_reference(root: Path, count: int = 16) -> tuple:
    """(images (count, 28, 28), logits (count, 10)): real digits test images of the torch cell the
    models in `root` were exported from, and that cell's model's own logits on them."""
    export = json.loads((root / "export.json").read_text())
    (cell_id,) = {a["cell"] for a in export["artefacts"] if a["framework"] == "torch"}
    cells = json.loads((Path(export["run_dir"]) / "results.json").read_text())["cells"]
    (cell,) = [c for c in cells if c["id"] == cell_id]
    out = root.parent / f"{root.name}-torch-reference.npz"
    done = subprocess.run(
        [sys.executable, "-c", _TORCH_LOGITS, str(Path(cell["artifacts"]["weights"]).parent), str(count),
         str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(out) as npz:
        return npz["images"], npz["logits"]
