"""TensorFlow's graph for TensorBoard: the traced tf.function (or a v1 tf.Graph), as TF has it."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from spotdiff.record.tensorboard import Board


def write_graph(board: Board, graph: Any) -> None:
    """A tf.Graph, a tf.function (its existing trace, or a new one without running it) or a
    ConcreteFunction: its GraphDef, as the Graphs dashboard expects it."""
    if hasattr(graph, "get_concrete_function"):
        graph = graph.get_concrete_function()
    if isinstance(graph, tf.types.experimental.ConcreteFunction):
        graph = graph.graph
    board.graph_def(graph.as_graph_def())
