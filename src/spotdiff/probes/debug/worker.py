"""Child entry point of `spotdiff debug`: run the probes of ONE (framework, mode), stream rows.

    python -m spotdiff.probes.debug.worker JOB_JSON EVENTS_JSONL

JOB_JSON: {"framework", "mode", "probes", "task", "steps", "threads", "out_dir"[, "probe_module"]}.
Events (see spotdiff.events): `environment` {versions}, `start` {probe}, `row` {row}, `done`, or
`error`. The drivers below are framework-free: they call the framework module's `make_step`,
`nan_tool` and `capture_graph` on the forwards of user_model.py and measure what comes back.
`probe_module` names a module to use instead of the framework's own (`spotdiff.probes.debug.<x>_probes`),
with the same functions.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from spotdiff.events import EventWriter
from spotdiff.probes.debug import common, schema, user_model

PROBE_MODULES = {"torch": "torch_probes", "tensorflow": "tf_probes", "jax": "jax_probes"}


class Skip(Exception):
    """The probe does not apply (e.g. the task offers no graph inputs)."""


def _batches(steps: int) -> list[np.ndarray]:
    """(B, 3) ones; B changes once, half way, so graph modes must trace twice."""
    return [np.ones((4 if i < steps // 2 else 5, 3), np.float32) for i in range(steps)]


def probe_print(fw: Any, mode: str, job: dict) -> dict[str, Any]:
    user_model.SEEN.clear()
    step, traces = fw.make_step(mode, user_model.forward_print, np.ones(3, np.float32))
    batches = _batches(job["steps"])
    count, printed = common.count_prints(lambda: [step(x) for x in batches])
    seen = user_model.SEEN[0] if user_model.SEEN else {}
    error = seen.get("error")
    return {"steps": len(batches), "print_count": count, "traces": traces(),
            "value_type": seen.get("type"), "value_concrete": seen.get("concrete"),
            "numpy_error": error.splitlines()[0][: common.MESSAGE_CHARS] if error else None,
            "printed": printed}


def _shape_bug(fw: Any, mode: str) -> tuple[BaseException, float, str]:
    step, _ = fw.make_step(mode, user_model.forward_shape_bug, np.ones((3, 1), np.float32))
    error, seconds, warned = common.timed_error(lambda: step(np.ones((4, 3), np.float32)))
    if error is None:
        raise RuntimeError("the shape bug ran without an error")
    return error, seconds, warned


def probe_error(fw: Any, mode: str, job: dict) -> dict[str, Any]:
    line = user_model.marker_line("shape bug")
    error, seconds, warned = _shape_bug(fw, mode)
    return {"user_line": line, **common.traceback_facts(error, line, warned), "seconds_to_error": seconds}


def probe_postmortem(fw: Any, mode: str, job: dict) -> dict[str, Any]:
    error, _, _ = _shape_bug(fw, mode)
    line, function = user_model.marker_line("shape bug"), user_model.forward_shape_bug.__name__
    return common.post_mortem(error, line, function)


def probe_nan(fw: Any, mode: str, job: dict) -> dict[str, Any]:
    line = user_model.marker_line("nan")
    w, x = np.ones(3, np.float32), -np.ones((4, 3), np.float32)
    step, _ = fw.make_step(mode, user_model.forward_nan, w)
    loss = float(np.asarray(step(x)))
    with fw.nan_tool():
        step, _ = fw.make_step(mode, user_model.forward_nan, w)
        error, seconds, warned = common.timed_error(lambda: step(x))
    return {"user_line": line, "nan_without_tool": bool(np.isnan(loss)), "tool": fw.NAN_TOOL,
            **common.nan_facts(error, line, warned), "seconds": seconds}


def probe_graph(fw: Any, mode: str, job: dict) -> dict[str, Any]:
    from spotdiff import frameworks
    from spotdiff.tasks import get_spec, impl_module

    task, framework = job["task"], job["framework"]
    spec = get_spec(task)
    impl = importlib.import_module(impl_module(task, frameworks.FRAMEWORKS[framework].impl_prefix))
    if framework not in spec.debug_graph_targets:  # declared on the spec, see tasks.contract
        raise Skip(f"task {task} declares no debug graph for {framework} (TaskSpec.debug_graph_targets)")
    params = spec.params()
    fn, args = impl.debug_graph(params, spec.build_data(params, 0))
    captured = fw.capture_graph(mode, fn, args)
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
    out_dir = Path(job["out_dir"])
    (out_dir / "graphs").mkdir(parents=True, exist_ok=True)
    result = {"kind": captured["kind"], "function": name, "graphs": captured["graphs"]}
    for prefix, suffix in (("", "txt"), ("lowered_", "lowered.txt")):
        if f"{prefix}dump_text" not in captured:
            continue
        dump = Path("graphs") / f"{task}-{framework}-{mode}.{suffix}"
        (out_dir / dump).write_text(captured[f"{prefix}dump_text"], encoding="utf-8")
        counts = captured[f"{prefix}op_counts"]
        result.update({f"{prefix}ops_total": sum(counts.values()), f"{prefix}op_counts": counts,
                       f"{prefix}dump": str(dump)})
        if prefix:
            result["lowered_kind"] = captured["lowered_kind"]
    return result


DRIVERS = {"print": probe_print, "error": probe_error, "postmortem": probe_postmortem,
           "nan": probe_nan, "graph": probe_graph}


def run_job(job: dict, out: EventWriter) -> None:
    """Threads and cores were pinned by `spotdiff.children` before this module was imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    own_probes = f"spotdiff.probes.debug.{PROBE_MODULES[job['framework']]}"
    fw = importlib.import_module(job.get("probe_module") or own_probes)
    if not job.get("probe_module"):  # the framework's own pools, sized as in every cell
        backend = importlib.import_module(f"spotdiff.backends.{job['framework']}.env")
        backend.configure(job["threads"], 0, "cpu")
    out.emit("environment", versions=fw.versions())
    for probe in job["probes"]:
        out.emit("start", probe=probe)
        start = time.perf_counter()
        status, result, error, detail = "ok", None, None, None
        try:
            result = DRIVERS[probe](fw, job["mode"], job)
        except Skip as reason:
            status, error = "skipped", str(reason)
        except Exception as failure:  # one probe's failure is its row, the others still run
            status, error = "failed", f"{type(failure).__name__}: {common.first_line(failure)}"
            detail = traceback.format_exc()[-3000:]
        row = schema.row(
            job["framework"], job["mode"], probe, status, result, error, time.perf_counter() - start, detail
        )
        out.emit("row", row=row)
    out.emit("done")


def main(argv: list[str]) -> int:
    job, out = json.loads(Path(argv[0]).read_text()), EventWriter(Path(argv[1]))
    try:
        run_job(job, out)
    except BaseException as error:  # import failures and the like: the harness fails the rest
        out.emit("error", type=type(error).__name__, message=common.first_line(error))
        return 1
    finally:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
