"""PyTorch side of the debug probes: the training step per mode, the NaN tool, graph capture.

Same names, same order in tf_probes.py and jax_probes.py; imported only inside a probe child.
"""

from __future__ import annotations

import collections
import contextlib
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

NAN_TOOL = "torch.autograd.detect_anomaly"
LEARNING_RATE = 0.1


def versions() -> dict[str, str]:
    return {"torch": torch.__version__}


@torch.compiler.disable  # Python-level inspection: under torch.compile this is where a graph breaks
def peek(value: Any) -> dict[str, Any]:
    """What a developer gets asking numpy for the value: concrete, or why not."""
    try:
        value.detach().cpu().numpy()
        return {"type": type(value).__name__, "concrete": True, "error": None}
    except Exception as error:
        return {"type": type(value).__name__, "concrete": False, "error": f"{type(error).__name__}: {error}"}


OPS = types.SimpleNamespace(log=torch.log, mean=torch.mean, peek=peek)


def make_step(mode: str, forward: Callable, w: np.ndarray) -> tuple[Callable[[np.ndarray], Any], Callable]:
    """(step(x) -> loss, traces()) for one SGD step on `forward(OPS, w, x)` in `mode`."""
    weight = torch.tensor(w, requires_grad=True)

    def step(x: torch.Tensor) -> torch.Tensor:
        loss = forward(OPS, weight, x)
        loss.backward()
        with torch.no_grad():
            weight.sub_(LEARNING_RATE * weight.grad)
        weight.grad = None
        return loss.detach()

    torch.compiler.reset()
    torch._dynamo.utils.counters.clear()  # no public counter of the graphs dynamo made
    run = torch.compile(step) if mode == "compile" else step

    def traces() -> int | None:
        return torch._dynamo.utils.counters["stats"]["unique_graphs"] if mode == "compile" else None

    return (lambda x: run(torch.from_numpy(x))), traces


@contextlib.contextmanager
def nan_tool():
    with torch.autograd.detect_anomaly(check_nan=True):
        yield


def _op_name(target: Any) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    return getattr(target, "__name__", str(target))


def _count(graphs: list[torch.fx.GraphModule]) -> dict[str, int]:
    counts = collections.Counter(
        _op_name(node.target) for gm in graphs for node in gm.graph.nodes
        if node.op in ("call_function", "call_method", "call_module")
    )
    return dict(counts.most_common())


class _Wrapped(torch.nn.Module):
    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.fn(*args)


def capture_graph(mode: str, fn: Callable, tensors: tuple) -> dict[str, Any]:
    """The graph of `fn(*tensors)`: torch.export's ATen graph (eager), dynamo's FX graphs (compile)."""
    if mode == "compile":
        graphs: list[torch.fx.GraphModule] = []

        def keep(gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
            graphs.append(gm)
            return gm.forward

        torch.compiler.reset()
        torch.compile(fn, backend=keep)(*tensors)
        dump = "\n\n".join(gm.print_readable(print_output=False) for gm in graphs)
        return {"kind": "torch.compile (dynamo FX graph)", "op_counts": _count(graphs),
                "graphs": len(graphs), "dump_text": dump}
    module = fn if isinstance(fn, torch.nn.Module) else _Wrapped(fn)
    program = torch.export.export(module, tensors)
    return {"kind": "torch.export (ATen graph)", "op_counts": _count([program.graph_module]),
            "graphs": 1, "dump_text": str(program)}
