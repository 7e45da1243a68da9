"""PyTorch's graph for TensorBoard: torch.export of the model, drawn in the Graphs dashboard.

torch.export (PyTorch's maintained graph capture; torch.jit.trace is deprecated) gives an ATen
graph of `module.forward`; each node becomes a node of a GraphDef (op = the ATen overload), and the
exported program's code is kept as text. Autograd builds the backward pass at run time, so the
graph is the forward pass only.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from spotdiff.record.tensorboard import Board, GraphBuilder, code_block


def write_graph(board: Board, module: torch.nn.Module, example_inputs: Sequence[Any]) -> None:
    """The exported forward graph of `module(*example_inputs)`, and its code as `graph/torch_export`."""
    exported = torch.export.export(module, tuple(example_inputs))
    builder = GraphBuilder()
    scope = f"{type(module).__name__}/"
    names: dict[Any, str] = {}
    for node in exported.graph_module.graph.nodes:
        value = node.meta.get("val")
        shape = list(value.shape) if hasattr(value, "shape") else None
        dtype = str(value.dtype).removeprefix("torch.") if hasattr(value, "dtype") else None
        inputs = [names[n] for n in node.all_input_nodes]
        if node.op == "placeholder":
            names[node] = builder.node(f"inputs/{node.name}", "Placeholder", shape=shape, dtype=dtype)
        elif node.op == "output":
            for i, name in enumerate(inputs):
                builder.node(f"outputs/{i}", "Identity", [name])
        else:
            names[node] = builder.node(
                f"{scope}{node.name}", str(node.target), inputs, shape=shape, dtype=dtype
            )
    board.graph_def(builder.graph)
    board.text("graph/torch_export", code_block(exported.graph_module.code.strip()))
