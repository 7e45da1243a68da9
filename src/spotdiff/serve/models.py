"""Load exported digit models for serving. Each format has a loader that never unpickles:
ONNX -> onnxruntime, TFLite -> the TFLite interpreter, SavedModel -> tf.saved_model.load,
jax.export artefacts -> jax.export.deserialize. `.pt2` programs are served through their ONNX twin."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
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


def _onnx(path: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]


def _tflite(path: Path):
    from spotdiff.serve.export_child import tflite_predict

    return lambda x: tflite_predict(path, x)


def _savedmodel(path: Path):
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    return lambda x: signature(images=tf.constant(x))["logits"].numpy()


def _jax(path: Path):
    from jax import export

    exported = export.deserialize(path.read_bytes())
    return lambda x: np.asarray(exported.call(x))


LOADERS = {
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
