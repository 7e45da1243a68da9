"""What `spotdiff debug` measures: probes, modes, the row schema of debug.json, and validation.

Neutral: no framework import. One row per (framework, mode, probe):

    {"framework": "torch", "mode": "eager", "probe": "print",
     "status": "ok" | "failed" | "skipped", "error": str | None, "seconds": float,
     "result": {...the probe's fields, see PROBE_FIELDS...}, "stderr_tail": str | None}

debug.json = {"schema": SCHEMA, "task", "created", "settings", "versions": {framework: version},
"rows": [...]}; docs/debugging.md describes every field.
"""

from __future__ import annotations

from typing import Any

from spotdiff import frameworks as fw
from spotdiff.errors import UserError

SCHEMA = "spotdiff.debug/1"
PROBES = ("print", "error", "postmortem", "nan", "graph")
DEBUG_MODES: dict[str, tuple[str, ...]] = {
    "torch": ("eager", "compile"),
    "tensorflow": ("eager", "graph", "xla"),
    "jax": ("eager", "jit"),
}
MODE_HELP = {
    ("torch", "eager"): "plain calls, autograd",
    ("torch", "compile"): "torch.compile of the whole step (default inductor backend)",
    ("tensorflow", "eager"): "GradientTape, no tf.function",
    ("tensorflow", "graph"): "tf.function step",
    ("tensorflow", "xla"): "tf.function(jit_compile=True) step",
    ("jax", "eager"): "jax.value_and_grad, no jax.jit",
    ("jax", "jit"): "jax.jit of the step",
}
PROBE_FIELDS: dict[str, dict[str, str]] = {
    "print": {
        "steps": "training steps run (the batch shape changes once, half way)",
        "print_count": "times the Python print in the forward ran",
        "traces": "traces/graphs the framework made (tf tracing count, jit cache size, dynamo graphs); "
                  "None in eager",
        "value_type": "type of the value at the print line",
        "value_concrete": "numpy could read that value (framework's own to-numpy call)",
        "numpy_error": "why numpy could not",
        "printed": "what the first print showed",
    },
    "error": {
        "user_line": "the marked line of the shape bug in user_model.py",
        "exception": "type of the exception the user catches",
        "message": "first line of its message",
        "message_lines": "lines in its message",
        "user_frame": "a traceback frame is the user's file at that line",
        "message_names_line": "the exception text names the user's file and line",
        "frames_total": "traceback frames below the probe's call",
        "frames_user": "frames in user_model.py",
        "frames_framework": "frames outside spotdiff (framework, stdlib, generated code)",
        "seconds_to_error": "seconds from the call to the exception (tracing included)",
    },
    "postmortem": {
        "reached_user_frame": "pdb 'up' reached user_model.py at the bug line",
        "reached_forward": "pdb reached a frame of the forward function, in whatever file",
        "forward_file": "the file of that frame (user_model.py, or generated code)",
        "read_local": "pdb printed the forward's local variable h there",
        "local_type": "type of h as pdb saw it",
        "local_repr": "first line pdb printed for h",
        "pdb_frames": "frames in the traceback pdb got",
    },
    "nan": {
        "user_line": "the marked log(-1) line",
        "nan_without_tool": "the loss is NaN when no tool is on (true by construction)",
        "tool": "the framework's NaN tool",
        "stopped": "the tool raised instead of returning NaN",
        "mentions_nan": "what it raised talks about NaN/Infinity (not, e.g., an unsupported op)",
        "names_log_op": "its report names the log op",
        "names_user_line": "its report (traceback, message or warning) names the user's line",
        "exception": "exception type", "message": "first line of its message",
        "seconds": "seconds from the call to the stop (or the end of the step)",
    },
    "graph": {
        "kind": "what was captured", "function": "the task's function or model captured",
        "ops_total": "operations in the captured graph", "op_counts": "operation -> count",
        "dump": "file with the graph, relative to the output folder",
        "graphs": "separate graphs captured (torch.compile: >1 means graph breaks)",
        "lowered_kind": "compiler IR (XLA modes)", "lowered_ops_total": "operations in it",
        "lowered_op_counts": "operation -> count", "lowered_dump": "file with it",
    },
}



def _choose(kind: str, value: str, choices: list[str]) -> None:
    if value not in choices:
        raise UserError(f"unknown {kind} {value!r}; choose from: {', '.join(choices)}")


def select(frameworks: list[str] | None, modes: list[str] | None,
           probes: list[str] | None) -> tuple[list[tuple[str, str]], list[str]]:
    """The (framework, mode) pairs and probes asked for; UserError naming the choices otherwise."""
    chosen = []
    for name in frameworks or list(DEBUG_MODES):
        canonical = fw.canonical(name)
        if canonical not in DEBUG_MODES:
            known = "no debug probes for" if canonical else "unknown"
            raise UserError(f"{known} framework {name!r}; choose from: {', '.join(DEBUG_MODES)}")
        chosen.append(canonical)
    available = sorted({m for f in chosen for m in DEBUG_MODES[f]})
    for mode in modes or []:
        _choose("mode", mode, available)
    for probe in probes or []:
        _choose("probe", probe, list(PROBES))
    pairs = [(f, m) for f in dict.fromkeys(chosen) for m in DEBUG_MODES[f] if not modes or m in modes]
    return pairs, [p for p in PROBES if not probes or p in probes]


def check_task(task: str) -> None:
    """UserError for an unknown task (the spec import is neutral)."""
    from spotdiff.tasks import get_spec

    get_spec(task)


def skipped_row(framework: str, mode: str, probe: str, reason: str) -> dict[str, Any]:
    return row(framework, mode, probe, "skipped", error=reason)


def row(framework: str, mode: str, probe: str, status: str, result: dict | None = None,
        error: str | None = None, seconds: float = 0.0, stderr_tail: str | None = None) -> dict[str, Any]:
    """One debug.json row (see the module docstring)."""
    return {"framework": framework, "mode": mode, "probe": probe, "status": status, "error": error,
            "seconds": round(seconds, 4), "result": result or {}, "stderr_tail": stderr_tail}
