"""The report's "X on Y vs Y" section: what a framework that runs on another framework costs there.

A framework mode that declares `runs_on` (spotdiff.frameworks.Mode; Keras' `jax-jit` runs on JAX)
is set beside the native cells of that framework in the same task and variant: the modes it
declares as counterparts (Keras `jax-jit` vs JAX `jit`), or every native cell when none of those
ran. Per pair: the task's speed metric and the ratio (above 1: the framework on top is slower),
parity of the two cells alone (the task's own parity function), and peak RSS.

`section(results)` returns what the template shows, or None when the run has no such cells.
"""

from __future__ import annotations

from typing import Any

from spotdiff import frameworks as fw
from spotdiff.report.plots import format_value, task_spec

RATE_SUFFIX = "/s"
TIME_UNITS = ("µs", "ms", "s")


def speed_metric(task: str) -> tuple[str, str, str, bool] | None:
    """The first headline metric of `task` that is a time or a rate: (key, label, unit, lower_is_better)."""
    spec = task_spec(task)
    for metric in spec.headline_metrics if spec else ():
        unit = metric[2]
        if unit.endswith(RATE_SUFFIX) or unit in TIME_UNITS:
            return metric
    return None


def _ok(cell: dict[str, Any]) -> bool:
    return cell.get("status") == "ok"


def native_partners(cell: dict[str, Any], cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The native cells `cell` (of a runs_on mode) is compared with."""
    framework = fw.FRAMEWORKS.get(cell.get("framework"))
    mode = framework.mode(cell.get("mode")) if framework else None
    if mode is None or mode.runs_on is None:
        return []
    same = [c for c in cells if _ok(c) and c.get("framework") == mode.runs_on
            and (c.get("task"), c.get("variant")) == (cell.get("task"), cell.get("variant"))]
    counterparts = [c for c in same if c.get("mode") in mode.counterparts]
    return counterparts or same


def pair_parity(task: str, pair: list[dict[str, Any]], overrides: dict[str, Any]) -> tuple[bool | None, str]:
    """The task's parity over these two cells alone: (passed, summary)."""
    from spotdiff.experiment import task_params

    spec = task_spec(task)
    if spec is None:
        return None, "task unknown here"
    try:
        result = spec.parity(pair, task_params(task, overrides))
    except Exception as error:  # a report is still written when one comparison cannot be made
        return None, f"not compared: {type(error).__name__}: {error}"
    entries = [entry for entry in result.values() if isinstance(entry, dict) and "passed" in entry]
    verdicts = [entry["passed"] for entry in entries]
    passed = None if not verdicts or None in verdicts else all(verdicts)
    return passed, "; ".join(str(entry.get("summary", "")) for entry in entries)


def _ratio(top: Any, native: Any, lower_is_better: bool) -> float | None:
    """How many times slower (or bigger) the cell on top is than the native one."""
    if not isinstance(top, (int, float)) or not isinstance(native, (int, float)) or top <= 0 or native <= 0:
        return None
    return top / native if lower_is_better else native / top


def section_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (cell on top, native partner), in the run's cell order."""
    cells = results.get("cells") or []
    overrides = (results.get("experiment") or {}).get("overrides") or {}
    rows = []
    for cell in cells:
        if not _ok(cell):
            continue
        for native in native_partners(cell, cells):
            task = cell["task"]
            metric = speed_metric(task)
            top_m, native_m = cell.get("metrics") or {}, native.get("metrics") or {}
            passed, summary = pair_parity(task, [cell, native], overrides)
            row = {
                "task": task, "variant": cell.get("variant"),
                "framework": cell["framework"], "mode": cell["mode"],
                "native_framework": native["framework"], "native_mode": native["mode"],
                "parity": {True: "PASS", False: "FAIL", None: "not compared"}[passed],
                "parity_summary": summary,
                "rss": format_value(top_m.get("peak_rss_mb"), "MB"),
                "native_rss": format_value(native_m.get("peak_rss_mb"), "MB"),
                "rss_ratio": _ratio(top_m.get("peak_rss_mb"), native_m.get("peak_rss_mb"), True),
                "metric_label": metric[1] if metric else "–", "speed_ratio": None,
                "speed": "–", "native_speed": "–",
            }
            if metric:
                key, _, unit, lower = metric
                row.update(speed=format_value(top_m.get(key), unit),
                           native_speed=format_value(native_m.get(key), unit),
                           speed_ratio=_ratio(top_m.get(key), native_m.get(key), lower))
            rows.append(row)
    return rows


def section(results: dict[str, Any]) -> dict[str, Any] | None:
    """Rows for the template; None without any cell of a mode that runs on another framework."""
    rows = section_rows(results)
    return {"rows": rows} if rows else None
