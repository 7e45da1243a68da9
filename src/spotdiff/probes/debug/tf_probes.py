"""TensorFlow side of the debug probes: the training step per mode, the NaN tool, graph capture.

Same names, same order in torch_probes.py and jax_probes.py; imported only inside a probe child.
"""

from __future__ import annotations

import collections
import contextlib
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from spotdiff.probes.debug.common import ir_op_counts

NAN_TOOL = "tf.debugging.enable_check_numerics"
LEARNING_RATE = 0.1


def versions() -> dict[str, str]:
    return {"tensorflow": tf.__version__}


@tf.autograph.experimental.do_not_convert  # runs as plain Python, at trace time in graph modes
def peek(value: Any) -> dict[str, Any]:
    """What a developer gets asking numpy for the value: concrete, or why not."""
    try:
        value.numpy()
        return {"type": type(value).__name__, "concrete": True, "error": None}
    except Exception as error:
        return {"type": type(value).__name__, "concrete": False, "error": f"{type(error).__name__}: {error}"}


OPS = types.SimpleNamespace(log=tf.math.log, mean=tf.reduce_mean, peek=peek)


def make_step(mode: str, forward: Callable, w: np.ndarray) -> tuple[Callable[[np.ndarray], Any], Callable]:
    """(step(x) -> loss, traces()) for one SGD step on `forward(OPS, w, x)` in `mode`."""
    weight = tf.Variable(w)

    def step(x: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = forward(OPS, weight, x)
        weight.assign_sub(LEARNING_RATE * tape.gradient(loss, weight))
        return loss

    run = step if mode == "eager" else tf.function(step, jit_compile=mode == "xla")

    def traces() -> int | None:
        return None if mode == "eager" else run.experimental_get_tracing_count()

    return (lambda x: run(tf.constant(x))), traces


@contextlib.contextmanager
def nan_tool():
    tf.debugging.enable_check_numerics()
    try:
        yield
    finally:
        tf.debugging.disable_check_numerics()


def _count(graph_def: Any) -> dict[str, int]:
    return dict(collections.Counter(node.op for node in graph_def.node).most_common())


def capture_graph(mode: str, fn: Callable, tensors: tuple) -> dict[str, Any]:
    """The concrete graph of tf.function(fn) (eager has none of its own); XLA mode adds the HLO."""
    function = tf.function(fn, jit_compile=mode == "xla")
    graph_def = function.get_concrete_function(*tensors).graph.as_graph_def()
    captured = {"kind": "tf.function concrete graph", "op_counts": _count(graph_def), "graphs": 1,
                "dump_text": str(graph_def)}
    if mode == "xla":
        hlo = function.experimental_get_compiler_ir(*tensors)(stage="hlo")
        captured.update(lowered_kind="XLA HLO", lowered_op_counts=ir_op_counts(hlo), lowered_dump_text=hlo)
    return captured
