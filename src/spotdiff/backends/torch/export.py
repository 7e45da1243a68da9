"""PyTorch's export formats for a trained digits model: torch.export (`.pt2`), the same program
compiled by AOTInductor, and ONNX through the dynamo exporter; each reloaded and checked for parity.
Run in the `spotdiff export` child (spotdiff.serve.export_child), which has imported no other framework."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from spotdiff.backends.artifacts import parity, size_bytes, target


def export_digits(params, neutral, images, root: Path, version: int, formats: list[str]):
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
        folder = target(root, "digits-torch-pt2", version)
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
            "size_bytes": size_bytes(folder),
            **parity(reference, out),
        }
    if "aoti" in formats:
        yield _export_aoti(program, trace_s, x, reference, root, version)
    if "onnx" in formats:
        folder = target(root, "digits-torch-onnx", version)
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
            "size_bytes": size_bytes(folder),
        }
        try:
            import onnxruntime as ort
        except ImportError:
            yield {**row, "parity_ok": None, "note": "onnxruntime not installed: parity not checked"}
        else:
            session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
            yield {**row, **parity(reference, session.run(None, {"images": x.numpy()})[0])}


def _export_aoti(program, trace_s: float, x, reference: np.ndarray, root: Path, version: int) -> dict:
    """The torch.export program compiled ahead of time by AOTInductor (C++ through the system compiler)
    into one package, loaded back with PyTorch's own runtime: PyTorch's documented deployment path."""
    import torch
    from torch._inductor.utils import fresh_cache

    folder = target(root, "digits-torch-aoti", version)
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
        "size_bytes": size_bytes(folder),
        **parity(reference, out),
    }
