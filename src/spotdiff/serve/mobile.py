"""Mobile: TFLite (LiteRT) file size and single-image latency, run as a child:
`python -m spotdiff.serve.mobile MODEL_ROOT REPEATS`.

Uses the LiteRT interpreter from `ai-edge-litert` (Google's maintained successor of
`tf.lite.Interpreter`, which TensorFlow marks deprecated), without importing TensorFlow; falls back to
`tf.lite.Interpreter` only when that package is missing. One JSON line per `.tflite` model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from spotdiff.serve.inprocess import time_predict
from spotdiff.serve.litert import interpreter_class

MARK = "SPOTDIFF_MOBILE "


def litert_predictor(path: Path, interpreter_type: type, batch: int = 1):
    """A `predict(x)` for a fixed batch size: resized and allocated once, as an app would."""
    interpreter = interpreter_type(model_path=str(path), num_threads=1)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], [batch, 28, 28, 1])
    interpreter.allocate_tensors()

    def predict(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return predict


def main(argv: list[str]) -> int:
    root, repeats = Path(argv[0]), int(argv[1])
    interpreter, runtime = interpreter_class()
    image = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)  # (1, 28, 28, 1)
    for path in sorted(root.glob("*/*/model.tflite")):
        predict = litert_predictor(path, interpreter)
        assert predict(image).shape == (1, 10)
        row = {
            "model": path.parent.parent.name,
            "version": path.parent.name,
            "size_bytes": path.stat().st_size,
            "runtime": runtime,
            "threads": 1,
            **time_predict(predict, image, repeats),
        }
        print(MARK + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
