"""Child process of `spotdiff where`: ONE framework records a few training steps, several ways.

    python -m spotdiff.locate.child REQUEST_JSON OUT_DIR

REQUEST_JSON: {"task", "task_source", "framework", "mode", "variant", "overrides", "seed",
"steps", "runs": [{"name": str, "align": {key: value}}], "tfdbg": folder or None}. For every
run and for float32 and float64 the task's `record_steps` (the last function of each
`tasks/<task>/<fw>_impl.py`) is called and its tensors saved to OUT_DIR/<run>-<dtype>.npz;
OUT_DIR/answer.json says what was recorded (layers, parameters, honoured alignments), what
failed, and what recording cost.
With "tfdbg" (a TensorFlow recorder only), every run is recorded under tfdbg v2
(`tf.debugging.experimental.enable_dump_debug_info`, FULL_HEALTH, no circular buffer) into that
folder, which TensorBoard's Debugger V2 opens.
Started through `spotdiff.children`, pinned before numpy or the framework is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

DTYPES = ("float32", "float64")


def records_with(impl_name: str, framework: str) -> str:
    """The framework whose process settings (and import) the recorder needs: `framework`, unless
    the implementation declares `RECORDS_WITH = "NAME"` (read, not imported), as a task does whose
    implementations all run one framework's code; the child then never imports the others."""
    try:
        origin = importlib.util.find_spec(impl_name).origin
        found = re.search(r'^RECORDS_WITH = "(\w+)"', Path(origin).read_text(), re.MULTILINE)
    except (ImportError, ValueError, AttributeError, OSError):
        return framework
    return found.group(1) if found else framework


def record(request: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Record every requested run in both dtypes; the answer written to answer.json."""
    import numpy as np

    from spotdiff import children, frameworks
    from spotdiff.children import peak_rss_mb
    from spotdiff.overrides import params_for
    from spotdiff.tasks import get_spec, impl_module, restore_task_source

    if request.get("task_source"):
        restore_task_source(request["task"], request["task_source"])
    framework = frameworks.FRAMEWORKS[request["framework"]]
    os.environ.update(framework.mode_env(request["mode"]))  # e.g. KERAS_BACKEND, before import
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # recording compares numerics: CPU, no TF32
    os.environ["JAX_PLATFORMS"] = "cpu"
    spec = get_spec(request["task"])  # a spec imports no framework
    impl_name = impl_module(request["task"], framework.impl_prefix)
    start = time.perf_counter()
    env = importlib.import_module(f"spotdiff.backends.{records_with(impl_name, framework.name)}.env")
    env.configure(children.pinned().get("threads", 1), request["seed"], "cpu")
    import_s = time.perf_counter() - start
    params = params_for(spec, request["overrides"])
    data = spec.build_data(params, request["seed"])
    impl = importlib.import_module(impl_name)
    answer: dict[str, Any] = {"status": "done", "versions": env.versions(), "import_s": import_s,
                              "runs": {}}
    if request.get("tfdbg"):  # tfdbg v2 (TensorBoard's Debugger V2) watches every run below
        import tensorflow as tf

        tf.debugging.experimental.enable_dump_debug_info(
            request["tfdbg"], tensor_debug_mode="FULL_HEALTH", circular_buffer_size=-1)
    for run in request["runs"]:
        for dtype in DTYPES:
            key = f"{run['name']}-{dtype}"
            began = time.perf_counter()
            try:
                got = impl.record_steps(params, data, request["steps"], dtype, dict(run["align"]),
                                        request["mode"], request["variant"])
            except Exception as error:  # one run failing (e.g. no float64 here) leaves the others
                answer["runs"][key] = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                                       "traceback": traceback.format_exc()[-2000:]}
                continue
            tensors = {name: np.asarray(value) for name, value in got["tensors"].items()}
            narrow = sorted(n for n, v in tensors.items()
                            if v.dtype.kind == "f" and v.dtype.itemsize < np.dtype(dtype).itemsize)
            if narrow:  # a "float64" run in float32 would measure a floor of zero on its side
                answer["runs"][key] = {"status": "failed", "error": f"asked for {dtype}, recorded "
                                       f"{tensors[narrow[0]].dtype}: {', '.join(narrow[:3])}"}
                continue
            np.savez(out_dir / f"{key}.npz", **tensors)
            answer["runs"][key] = {
                "status": "ok", "record_s": time.perf_counter() - began,
                "layers": [list(layer) for layer in got["layers"]],
                "params": list(got["params"]), "buffers": list(got.get("buffers", ())),
                "optimizer": got.get("optimizer"),
                "aligned": sorted(got.get("aligned", ())),
                "nonfinite": sorted(n for n, v in tensors.items() if not np.all(np.isfinite(v))),
            }
    if request.get("tfdbg"):
        tf.debugging.experimental.disable_dump_debug_info()  # flushes the dump
        answer["tfdbg"] = request["tfdbg"]
    answer["peak_rss_mb"] = peak_rss_mb()
    return answer


def main(argv: list[str]) -> int:
    request, out_dir = json.loads(Path(argv[0]).read_text()), Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        answer = record(request, out_dir)
    except BaseException as error:  # the parent reads why from the answer, not from a traceback
        answer = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                  "traceback": traceback.format_exc()[-4000:]}
    (out_dir / "answer.json").write_text(json.dumps(answer, indent=1))
    return 0 if answer["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
