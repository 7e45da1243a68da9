"""Load exported digit models for serving. Each format has a loader that never unpickles:
ONNX -> onnxruntime, TFLite -> the LiteRT interpreter, SavedModel -> tf.saved_model.load,
jax.export artefacts -> jax.export.deserialize, AOTInductor packages -> torch._inductor.aoti_load_package
(PyTorch's own runtime). The plain `torch.export` `.pt2` is not served: its AOTInductor package is."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
INPUT_SHAPE = (28, 28, 1)  # one image, channels-last; torch/ONNX models get it transposed


@dataclass
class ServedModel:
    name: str
    version: int
    format: str
    predict: Callable[[np.ndarray], np.ndarray]  # (N, 28, 28, 1) float32 -> (N, 10) logits
    lock: threading.Lock = field(default_factory=threading.Lock)
    # REST queues calls on one worker thread per model instead of waking a thread per request
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
    )

    def run(self, x: np.ndarray) -> np.ndarray:
        """`predict`, one call at a time (REST and gRPC share the lock): TFLite is not thread-safe."""
        with self.lock:
            return self.predict(x)


def _onnx(path: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    if inp.shape[-1] == 1:  # channels-last (tf2onnx of the Keras model): feed as is
        return lambda x: session.run(None, {inp.name: x})[0]
    return lambda x: session.run(None, {inp.name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[
        0
    ]  # torch: NCHW


def _tflite(path: Path):
    from spotdiff.serve.litert import interpreter_class

    # One interpreter, built once and resized only when the batch changes (callers hold the lock).
    interpreter = interpreter_class()[0](model_path=str(path))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    shape: list[int] = []

    def predict(x: np.ndarray) -> np.ndarray:
        if list(x.shape) != shape:
            interpreter.resize_tensor_input(inp["index"], list(x.shape))
            interpreter.allocate_tensors()
            shape[:] = x.shape
        interpreter.set_tensor(inp["index"], x.astype(np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(out["index"]).copy()

    return predict


def _savedmodel(path: Path):
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    return lambda x: signature(images=tf.constant(x))["logits"].numpy()


def _jax(path: Path):
    from jax import export

    exported = export.deserialize(path.read_bytes())
    return lambda x: np.asarray(exported.call(x))


def _aoti(path: Path):
    import torch

    package = torch._inductor.aoti_load_package(str(path))

    def predict(x: np.ndarray) -> np.ndarray:
        # one channel: NHWC and NCHW hold the same bytes, and a reshape gives the canonical strides
        # the package was compiled for (a transpose's view keeps odd ones)
        images = torch.from_numpy(np.ascontiguousarray(x).reshape(len(x), 1, 28, 28))  # (N, 1, 28, 28)
        with torch.inference_mode():
            return package(images).numpy()

    return predict


LOADERS = {
    "model.aoti.pt2": ("aoti", _aoti),
    "model.onnx": ("onnx", _onnx),
    "model.tflite": ("tflite", _tflite),
    "saved_model.pb": ("savedmodel", _savedmodel),
    "model.jax": ("jax", _jax),
}


def load_models(root: Path, formats: set[str] | None = None) -> dict[str, dict[int, ServedModel]]:
    """Every `<name>/<version>/` under `root` in a loadable format, by name and version."""
    served: dict[str, dict[int, ServedModel]] = {}
    for version_dir in sorted(root.glob("*/*")):
        name, version = version_dir.parent.name, version_dir.name
        if not (NAME_RE.match(name) and version.isdigit() and version_dir.is_dir()):
            continue
        for filename, (fmt, loader) in LOADERS.items():
            if (version_dir / filename).is_file() and (formats is None or fmt in formats):
                target = version_dir if fmt == "savedmodel" else version_dir / filename
                served.setdefault(name, {})[int(version)] = ServedModel(
                    name, int(version), fmt, loader(target)
                )
                break
    return served
