"""JAX's graph for TensorBoard: the jaxpr, drawn in the Graphs dashboard and kept as text.

JAX has no graph format of its own for TensorBoard, so each jaxpr equation becomes a node of a
GraphDef (op = the primitive's name); a nested jaxpr (jit, scan, custom_jvp_call, ...) whose
inputs and outputs match its equation's is drawn inline as a collapsible group named after it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.extend.core as jcore

from spotdiff.record.tensorboard import Board, GraphBuilder, code_block


def input_names(args: Sequence[Any], arg_names: Sequence[str]) -> list[str]:
    """One name per leaf of `args`: `state.phi`, `state.opt_state.0.trace`, `x`, ..."""
    names = []
    for name, arg in zip(arg_names, args):
        for path, _ in jax.tree_util.tree_flatten_with_path(arg)[0]:
            names.append(
                ".".join(filter(None, [name, jax.tree_util.keystr(path, simple=True, separator=".")]))
            )
    return names


def _aval(var: Any) -> tuple[list[int], str]:
    aval = var.aval
    return [int(d) for d in getattr(aval, "shape", ())], str(getattr(aval, "dtype", ""))


def _add_jaxpr(
    builder: GraphBuilder, jaxpr: Any, consts: Sequence[Any], scope: str, inputs: list[str]
) -> list[str]:
    """Add the equations of `jaxpr` under `scope`, fed by `inputs`; return its output node names."""
    env: dict[Any, str] = dict(zip(jaxpr.invars, inputs))
    for i, var in enumerate(jaxpr.constvars):
        shape, dtype = _aval(var)
        value = {"value": str(consts[i])[:80]} if i < len(consts) else {}
        env[var] = builder.node(f"{scope}const", "Const", shape=shape, dtype=dtype, attrs=value)

    def read(var: Any) -> str:
        if isinstance(var, jcore.Literal):
            return builder.node(
                f"{scope}literal", "Const", shape=[], dtype=str(var.aval.dtype), attrs={"value": var.val}
            )
        return env[var]

    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        operands = [read(v) for v in eqn.invars]
        subs = list(jcore.jaxprs_in_params(eqn.params))
        inline = (
            len(subs) == 1
            and len(subs[0].invars) == len(operands)
            and len(subs[0].outvars) == len(eqn.outvars)
        )
        if inline:
            closed = next((p for p in eqn.params.values() if isinstance(p, jcore.ClosedJaxpr)), None)
            group = f"{scope}{eqn.params.get('name', name)}/"
            outputs = _add_jaxpr(builder, subs[0], closed.consts if closed else [], group, operands)
        else:
            shape, dtype = _aval(eqn.outvars[0]) if eqn.outvars else ([], "")
            attrs = {k: v for k, v in eqn.params.items() if isinstance(v, (int, float, str, bool, tuple))}
            node = builder.node(f"{scope}{name}", name, operands, shape=shape, dtype=dtype, attrs=attrs)
            for i, sub in enumerate(subs):  # drawn inside the node's group, fed by placeholders
                sub_inputs = [
                    builder.node(f"{node}/{i}/in", "Placeholder", shape=_aval(v)[0]) for v in sub.invars
                ]
                _add_jaxpr(builder, sub, [], f"{node}/{i}/", sub_inputs)
            outputs = [node if i == 0 else f"{node}:{i}" for i in range(len(eqn.outvars))]
        for var, out in zip(eqn.outvars, outputs):
            if not isinstance(var, jcore.DropVar):
                env[var] = out
    return [read(v) for v in jaxpr.outvars]


def write_graph(board: Board, fn: Callable, args: Sequence[Any], arg_names: Sequence[str]) -> None:
    """The jaxpr of `fn(*args)`: a GraphDef for the Graphs dashboard and the text as `graph/jaxpr`."""
    closed = jax.make_jaxpr(fn)(*args)
    builder = GraphBuilder()
    inputs = []
    for var, label in zip(closed.jaxpr.invars, input_names(args, arg_names)):
        shape, dtype = _aval(var)
        inputs.append(builder.node(f"inputs/{label}", "Placeholder", shape=shape, dtype=dtype))
    outputs = _add_jaxpr(builder, closed.jaxpr, closed.consts, "", inputs)
    for i, out in enumerate(outputs):
        builder.node(f"outputs/{i}", "Identity", [out])
    board.graph_def(builder.graph)
    board.text("graph/jaxpr", code_block(str(closed)))
