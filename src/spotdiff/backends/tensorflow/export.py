"""TensorFlow's export formats for a trained digits model: a SavedModel, a TFLite flatbuffer and ONNX
through tf2onnx; each reloaded and checked for parity. `tf_signature` and `saved_model_row` also
serve JAX's jax2tf SavedModel. Run in the `spotdiff export` child (spotdiff.serve.export_child)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from spotdiff.backends.artifacts import parity, size_bytes, target
from spotdiff.tasks.digits.models import FLATTEN_CHW


def tf_signature(fn):
    import tensorflow as tf

    return tf.function(fn, input_signature=[tf.TensorSpec((None, 28, 28, 1), tf.float32, name="images")])


def export_digits(params, neutral, images, root: Path, version: int, formats: list[str]):
    import tensorflow as tf

    from spotdiff.backends.tensorflow import weights
    from spotdiff.tasks.digits import tf_impl

    model = tf_impl.build_model(params, None, "random", dropout=False)
    weights.load_neutral(model, neutral, "fc1", FLATTEN_CHW[params.model])
    x = images[..., None]  # (N, 28, 28, 1)
    reference = model(x, training=False).numpy()
    module = tf.Module()
    module.model = model
    module.serve = tf_signature(lambda images: {"logits": model(images, training=False)})
    if "savedmodel" in formats:
        folder = target(root, "digits-tensorflow-savedmodel", version)
        yield saved_model_row(module, folder, "savedmodel", x, reference, time.perf_counter())
    if "tflite" in formats:
        folder = target(root, "digits-tensorflow-tflite", version)
        start = time.perf_counter()
        (folder / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        export_s = time.perf_counter() - start
        yield {
            "name": "digits-tensorflow-tflite",
            "format": "tflite",
            "path": str(folder / "model.tflite"),
            "export_s": export_s,
            "size_bytes": size_bytes(folder),
            **parity(reference, tflite_predict(folder / "model.tflite", x)),
        }

    if "tf2onnx" in formats:
        folder = target(root, "digits-tensorflow-onnx", version)
        start = time.perf_counter()
        import tf2onnx

        tf2onnx.convert.from_function(
            module.serve, input_signature=module.serve.input_signature, output_path=str(folder / "model.onnx")
        )
        export_s = time.perf_counter() - start
        import onnxruntime as ort

        session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        yield {
            "name": "digits-tensorflow-onnx",
            "format": "tf2onnx",
            "path": str(folder / "model.onnx"),
            "export_s": export_s,
            "size_bytes": size_bytes(folder),
            **parity(reference, session.run(None, {"images": x})[0]),
        }


def tflite_predict(path: Path, x: np.ndarray) -> np.ndarray:
    """Run a TFLite model over a batch, resizing its input to the batch."""
    from spotdiff.serve.litert import interpreter_class

    interpreter = interpreter_class()[0](model_path=str(path))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def saved_model_row(
    module, folder: Path, fmt: str, x: np.ndarray, reference: np.ndarray, start: float
) -> dict:
    """Save `module` (its `serve` as `serving_default`), load it back, and report size, time and parity.
    `start`: when the export began (perf_counter), so that conversion counts in `export_s`."""
    import tensorflow as tf

    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    export_s = time.perf_counter() - start
    signature = tf.saved_model.load(str(folder)).signatures["serving_default"]
    out = signature(images=tf.constant(x))["logits"].numpy()
    return {
        "name": folder.parent.name,
        "format": fmt,
        "path": str(folder),
        "export_s": export_s,
        "size_bytes": size_bytes(folder),
        **parity(reference, out),
    }
