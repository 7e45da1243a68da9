"""Child script of tests/test_port_examples.py: build every example model of ONE framework, run it
forward once on its input, print one JSON line per file (parameter count, output shape, finite).

    python tests/port_examples_support.py FRAMEWORK FILE:DTYPE[D0,D1,...] ...

Inputs are given in the source's (PyTorch's) layout; 4-D inputs go to Keras and Flax as NHWC.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

VOCAB = 50  # token ids of the GRU classifier are below its embedding's row count


def load_build(path: Path):
    spec = importlib.util.spec_from_file_location(f"example_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build


def draw(text: str) -> np.ndarray:
    dtype, dims = text.rstrip("]").split("[")
    shape = tuple(int(d) for d in dims.split(","))
    rng = np.random.default_rng(0)
    if dtype.startswith("int"):
        return rng.integers(0, VOCAB, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def run_torch(model, x: np.ndarray) -> tuple[int, np.ndarray]:
    import torch

    with torch.no_grad():
        y = model(torch.as_tensor(x))
    return sum(p.numel() for p in model.parameters()), y.numpy()


def run_keras(model, x: np.ndarray) -> tuple[int, np.ndarray]:
    y = model(x.transpose(0, 2, 3, 1) if x.ndim == 4 else x, training=False)
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights), np.asarray(y)


def run_flax(model, x: np.ndarray) -> tuple[int, np.ndarray]:
    import jax
    from flax import nnx

    model.eval()
    forward = nnx.jit(lambda m, inputs: m(inputs))  # one compile, not one per operation
    y = forward(model, jax.numpy.asarray(x.transpose(0, 2, 3, 1) if x.ndim == 4 else x))
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))), np.asarray(y)


def main(framework: str, cases: list[str]) -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    run = {"torch": run_torch, "keras": run_keras, "flax": run_flax}[framework]
    for case in cases:
        path, _, input_text = case.partition(":")
        count, y = run(load_build(Path(path))(), draw(input_text))
        print(json.dumps({"file": path, "params": int(count), "output": list(y.shape),
                          "finite": bool(np.isfinite(y).all())}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
