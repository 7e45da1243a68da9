"""One framework's exports, run as a child process: `python -m spotdiff.serve.export_child REQUEST_JSON`.

The request names the cell directory (with `cell.json` and `weights.npz`), the model root, the
version and the formats; one JSON line per artefact goes to stdout. The in-process reference model
is rebuilt from the same neutral weights, so parity compares the artefact with its own framework.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from spotdiff.tasks.digits.models import FLATTEN_CHW
from spotdiff.tasks.digits.spec import DigitsParams, test_images

LOGIT_TOL = 1e-4


def _size_bytes(path: Path) -> int:
    return (
        path.stat().st_size
        if path.is_file()
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )


def _parity(reference: np.ndarray, exported: np.ndarray) -> dict:
    max_abs = float(np.max(np.abs(reference - exported)))
    same_argmax = bool(np.array_equal(reference.argmax(1), exported.argmax(1)))
    return {
        "max_abs_diff": max_abs,
        "same_argmax": same_argmax,
        "parity_ok": max_abs <= LOGIT_TOL and same_argmax,
    }


def _target(root: Path, name: str, version: int) -> Path:
    folder = root / name / str(version)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def export_torch(params, neutral, images, root: Path, version: int, formats: list[str]):
    import torch

    from spotdiff.backends.torch import weights
    from spotdiff.tasks.digits import torch_impl

    model = torch_impl.build_model(params, None, "random", dropout=False).cpu().eval()
    weights.load_neutral(model, neutral)
    # (N, 1, 28, 28): the torch model is channels-first. A reshape, not images[:, None], whose channel
    # stride of 0 the AOTInductor build specialises on: served contiguous inputs then got wrong logits.
    x = torch.from_numpy(np.ascontiguousarray(images).reshape(len(images), 1, 28, 28))
    with torch.no_grad():
        reference = model(x).numpy()
    batch = torch.export.Dim("batch", min=1, max=4096)
    if "pt2" in formats or "aoti" in formats:
        start = time.perf_counter()
        program = torch.export.export(model, (x[:2],), dynamic_shapes=({0: batch},))
        trace_s = time.perf_counter() - start
    if "pt2" in formats:
        folder = _target(root, "digits-torch-pt2", version)
        start = time.perf_counter()
        torch.export.save(program, folder / "model.pt2")
        export_s = trace_s + time.perf_counter() - start
        with torch.no_grad():
            out = torch.export.load(folder / "model.pt2").module()(x).numpy()
        yield {
            "name": "digits-torch-pt2",
            "format": "pt2",
            "path": str(folder / "model.pt2"),
            "export_s": export_s,
            "size_bytes": _size_bytes(folder),
            **_parity(reference, out),
        }
    if "aoti" in formats:
        yield _export_aoti(program, trace_s, x, reference, root, version)
    if "onnx" in formats:
        folder = _target(root, "digits-torch-onnx", version)
        start = time.perf_counter()
        torch.onnx.export(
            model,
            (x[:2],),
            str(folder / "model.onnx"),
            dynamo=True,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
        export_s = time.perf_counter() - start
        row = {
            "name": "digits-torch-onnx",
            "format": "onnx",
            "path": str(folder / "model.onnx"),
            "export_s": export_s,
            "size_bytes": _size_bytes(folder),
        }
        try:
            import onnxruntime as ort
        except ImportError:
            yield {**row, "parity_ok": None, "note": "onnxruntime not installed: parity not checked"}
        else:
            session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
            yield {**row, **_parity(reference, session.run(None, {"images": x.numpy()})[0])}


def _export_aoti(program, trace_s: float, x, reference: np.ndarray, root: Path, version: int) -> dict:
    """The torch.export program compiled ahead of time by AOTInductor (C++ through the system compiler)
    into one package, loaded back with PyTorch's own runtime: PyTorch's documented deployment path."""
    import torch
    from torch._inductor.utils import fresh_cache

    folder = _target(root, "digits-torch-aoti", version)
    start = time.perf_counter()
    with fresh_cache():  # cold, so that compile_s is the real compile time
        torch._inductor.aoti_compile_and_package(program, package_path=str(folder / "model.aoti.pt2"))
    compile_s = time.perf_counter() - start
    with torch.inference_mode():
        out = torch._inductor.aoti_load_package(str(folder / "model.aoti.pt2"))(x).numpy()
    return {
        "name": "digits-torch-aoti",
        "format": "aoti",
        "path": str(folder / "model.aoti.pt2"),
        "export_s": trace_s + compile_s,
        "compile_s": compile_s,
        "size_bytes": _size_bytes(folder),
        **_parity(reference, out),
    }


def _tf_signature(fn):
    import tensorflow as tf

    return tf.function(fn, input_signature=[tf.TensorSpec((None, 28, 28, 1), tf.float32, name="images")])


def export_tensorflow(params, neutral, images, root: Path, version: int, formats: list[str]):
    import tensorflow as tf

    from spotdiff.backends.tensorflow import weights
    from spotdiff.tasks.digits import tf_impl

    model = tf_impl.build_model(params, None, "random", dropout=False)
    weights.load_neutral(model, neutral, "fc1", FLATTEN_CHW[params.model])
    x = images[..., None]  # (N, 28, 28, 1)
    reference = model(x, training=False).numpy()
    module = tf.Module()
    module.model = model
    module.serve = _tf_signature(lambda images: {"logits": model(images, training=False)})
    if "savedmodel" in formats:
        folder = _target(root, "digits-tensorflow-savedmodel", version)
        yield _saved_model_row(module, folder, "savedmodel", x, reference, time.perf_counter())
    if "tflite" in formats:
        folder = _target(root, "digits-tensorflow-tflite", version)
        start = time.perf_counter()
        (folder / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        export_s = time.perf_counter() - start
        yield {
            "name": "digits-tensorflow-tflite",
            "format": "tflite",
            "path": str(folder / "model.tflite"),
            "export_s": export_s,
            "size_bytes": _size_bytes(folder),
            **_parity(reference, tflite_predict(folder / "model.tflite", x)),
        }

    if "tf2onnx" in formats:
        folder = _target(root, "digits-tensorflow-onnx", version)
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
            "size_bytes": _size_bytes(folder),
            **_parity(reference, session.run(None, {"images": x})[0]),
        }


def tflite_predict(path: Path, x: np.ndarray) -> np.ndarray:
    """Run a TFLite model over a batch, resizing its input to the batch."""
    from spotdiff.serve.mobile import interpreter_class

    interpreter = interpreter_class()[0](model_path=str(path))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def export_jax(params, neutral, images, root: Path, version: int, formats: list[str]):
    import jax
    from jax import export

    from spotdiff.backends.jax import weights
    from spotdiff.tasks.digits import jax_impl

    model = jax_impl.build_model(params, None, "random", dropout=False)
    weights.load_neutral(model, neutral, "fc1", FLATTEN_CHW[params.model])
    model.eval()
    x = images[..., None]
    reference = np.asarray(model(x))
    if "jax" in formats:
        folder = _target(root, "digits-jax-export", version)
        start = time.perf_counter()
        (batch,) = export.symbolic_shape("b")
        spec = jax.ShapeDtypeStruct((batch, 28, 28, 1), np.float32)
        exported = export.export(jax.jit(lambda images: model(images)))(spec)
        (folder / "model.jax").write_bytes(exported.serialize())
        export_s = time.perf_counter() - start
        out = np.asarray(export.deserialize((folder / "model.jax").read_bytes()).call(x))
        yield {
            "name": "digits-jax-export",
            "format": "jax",
            "path": str(folder / "model.jax"),
            "export_s": export_s,
            "size_bytes": _size_bytes(folder),
            **_parity(reference, out),
        }

    if "jax2tf" in formats:
        yield _export_jax2tf(model, reference, x, root, version)


def _export_jax2tf(model, reference: np.ndarray, x: np.ndarray, root: Path, version: int) -> dict:
    """A TF SavedModel of the JAX forward through jax2tf (StableHLO inside an XlaCallModule op)."""
    import tensorflow as tf
    from jax.experimental import jax2tf

    folder = _target(root, "digits-jax-savedmodel", version)
    start = time.perf_counter()
    # the weights travel as constants: fine at this size (jax2tf suggests tf.Variables past ~2 GB)
    forward = jax2tf.convert(
        lambda images: model(images), polymorphic_shapes=["(b, 28, 28, 1)"], with_gradient=False
    )
    module = tf.Module()
    module.serve = _tf_signature(lambda images: {"logits": forward(images)})
    return _saved_model_row(module, folder, "jax2tf", x, reference, start)


def _saved_model_row(
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
        "size_bytes": _size_bytes(folder),
        **_parity(reference, out),
    }


EXPORTERS = {"torch": export_torch, "tensorflow": export_tensorflow, "jax": export_jax}


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    cell_dir, root = Path(request["cell_dir"]), Path(request["out"])
    cell = json.loads((cell_dir / "cell.json").read_text())
    params = DigitsParams(**cell["params"])
    with np.load(cell_dir / "weights.npz") as npz:
        neutral = {k: npz[k] for k in npz.files}
    images, _ = test_images(params, cell["seed"])
    images = images.astype(np.float32)
    for row in EXPORTERS[cell["framework"]](
        params, neutral, images, root, request["version"], request["formats"]
    ):
        row.update(cell=cell["id"], framework=cell["framework"], test_images=len(images))
        print("SPOTDIFF_EXPORT " + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
