"""JAX side of the debug probes: the training step per mode, the NaN tool, graph capture.

Same names, same order in torch_probes.py and tf_probes.py; imported only inside a probe child.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

from spotdiff.probes.debug.common import ir_op_counts

NAN_TOOL = "jax_debug_nans"
LEARNING_RATE = 0.1


def versions() -> dict[str, str]:
    return {"jax": jax.__version__}


def peek(value: Any) -> dict[str, Any]:
    """What a developer gets asking numpy for the value: concrete, or why not."""
    try:
        np.asarray(value)
        return {"type": type(value).__name__, "concrete": True, "error": None}
    except Exception as error:
        return {"type": type(value).__name__, "concrete": False, "error": f"{type(error).__name__}: {error}"}


OPS = types.SimpleNamespace(log=jnp.log, mean=jnp.mean, peek=peek)


def make_step(mode: str, forward: Callable, w: np.ndarray) -> tuple[Callable[[np.ndarray], Any], Callable]:
    """(step(x) -> loss, traces()) for one SGD step on `forward(OPS, w, x)` in `mode`."""
    state = {"w": jnp.asarray(w)}

    def step(w: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        loss, grad = jax.value_and_grad(lambda v: forward(OPS, v, x))(w)
        return w - LEARNING_RATE * grad, loss

    run = jax.jit(step) if mode == "jit" else step

    def call(x: np.ndarray) -> jax.Array:
        state["w"], loss = run(state["w"], jnp.asarray(x))
        return loss

    def traces() -> int | None:
        return run._cache_size() if mode == "jit" else None

    return call, traces


@contextlib.contextmanager
def nan_tool():
    jax.config.update("jax_debug_nans", True)
    try:
        yield
    finally:
        jax.config.update("jax_debug_nans", False)


def _count(jaxpr: Any, counts: collections.Counter) -> collections.Counter:
    for eqn in jaxpr.eqns:
        counts[eqn.primitive.name] += 1
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            _count(sub, counts)
    return counts


def capture_graph(mode: str, fn: Callable, arrays: tuple) -> dict[str, Any]:
    """The jaxpr of fn (the same in both modes); jit mode adds the StableHLO it lowers to."""
    fn = functools.partial(fn)  # a plain callable for make_jaxpr and jit, models included
    closed = jax.make_jaxpr(fn)(*arrays)
    captured = {"kind": "jaxpr", "op_counts": dict(_count(closed.jaxpr, collections.Counter()).most_common()),
                "graphs": 1, "dump_text": str(closed)}
    if mode == "jit":
        stablehlo = jax.jit(fn).lower(*arrays).as_text()
        captured.update(lowered_kind="StableHLO", lowered_op_counts=ir_op_counts(stablehlo),
                        lowered_dump_text=stablehlo)
    return captured
