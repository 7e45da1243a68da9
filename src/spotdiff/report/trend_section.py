"""report.html's "Across runs" section: each task's headline metric, cell by cell, over the runs in
the history store that measured that cell the same way on this machine.

"The same way" is the store's cell fingerprint (the cell id plus every setting that changes how long
it takes: threads, device, precision, overrides, repeats...) on the same host and CPU model; runs
started after this one are left out, so re-rendering an old report shows what was known then. A cell
needs two finite values to be drawn; a task with no such cell gets no plot, and without any the
section is left out (`None`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from spotdiff.errors import UserError
from spotdiff.record import store
from spotdiff.report.cells import cell_label, ordered_cells, task_spec
from spotdiff.report.plots import RC, figure_svg, format_value
from spotdiff.trend import Trend, cell_trend

LOG_SCALE_SPAN = 20.0  # values of one plot spanning more than this factor go on a log axis


def _this_run_row(results: dict[str, Any], cell: dict[str, Any]) -> dict[str, Any]:
    """The row the store would hold for `cell`, so the section works on a run that was not indexed."""
    env = results.get("environment") or {}
    return {**cell, "cell_id": cell["id"], "run_id": results.get("run_id"),
            "started_at": env.get("started_at"), "versions": env.get("frameworks") or {},
            "metrics": cell.get("metrics") or {}}


def _same_measurement(results: dict[str, Any], cell: dict[str, Any],
                      rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored rows of `cell` measured the same way on this machine up to this run, then this run's."""
    env = results.get("environment") or {}
    fingerprint = store.cell_fingerprint(cell["id"], results.get("experiment") or {})
    started = env.get("started_at") or ""
    earlier = [row for row in rows
               if row.get("fingerprint") == fingerprint and row.get("run_id") != results.get("run_id")
               and row.get("hostname") == env.get("hostname") and row.get("cpu_model") == env.get("cpu_model")
               and (not started or (row.get("started_at") or "") <= started)]
    return earlier + [_this_run_row(results, cell)]


def task_trends(results: dict[str, Any], task: str, rows: list[dict[str, Any]]) -> list[tuple[dict, Trend]]:
    """(cell, its trend of the task's first headline metric) for every ok cell of this run with at
    least two finite values across runs."""
    spec = task_spec(task)
    if spec is None or not spec.headline_metrics:
        return []
    metric = spec.headline_metrics[0][0]
    found = []
    for cell in ordered_cells(results, task):
        if cell.get("status") != "ok":
            continue
        try:
            trend = cell_trend(cell["id"], metric, _same_measurement(results, cell, rows))
        except UserError:  # the metric was not recorded for this cell
            continue
        if sum(point.value is not None for point in trend.points) >= 2:
            found.append((cell, trend))
    return found


def _figure(trends: list[tuple[dict, Trend]]) -> Figure:
    """One line per cell over the union of runs, oldest left, min–max whiskers where recorded."""
    runs = sorted({(p.started_at or "", p.run_id) for _, t in trends for p in t.points})
    position = {run_id: index for index, (_, run_id) in enumerate(runs)}
    fig = Figure(figsize=(8.4, 3.8), layout="constrained")
    ax = fig.add_subplot()
    values = []
    for cell, trend in trends:
        shown = [p for p in trend.points if p.value is not None]
        values += [p.value for p in shown]
        ax.errorbar([position[p.run_id] for p in shown], [p.value for p in shown],
                    yerr=[[p.value - p.low if p.low is not None else 0.0 for p in shown],
                          [p.high - p.value if p.high is not None else 0.0 for p in shown]],
                    marker="o", markersize=4, capsize=2, label=cell_label(cell))
    positive = [v for v in values if v > 0]
    if positive and len(positive) == len(values) and max(positive) / min(positive) > LOG_SCALE_SPAN:
        ax.set_yscale("log")
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels([(started or run_id)[:16].replace("T", " ") for started, run_id in runs],
                       rotation=30, ha="right", fontsize=7)
    _, trend = trends[0]
    unit = f" ({trend.unit})" if trend.unit and trend.unit not in trend.label else ""
    ax.set_ylabel(trend.label + unit)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def _row(cell: dict[str, Any], trend: Trend) -> dict[str, Any]:
    """This run's value against the previous one measured the same way, as the table shows it."""
    shown = [p for p in trend.points if p.value is not None]
    now = trend.points[-1].value
    before = shown[-2].value if now is not None and len(shown) >= 2 else None
    ratio = now / before if now is not None and before and math.isfinite(now / before) else None
    return {"cell": cell_label(cell), "runs": len(shown), "first": format_value(shown[0].value, trend.unit),
            "previous": format_value(before, trend.unit), "now": format_value(now, trend.unit),
            "ratio": f"{ratio:.2f}x" if ratio is not None else "–"}


def trend_section(results: dict[str, Any], png_dir: Path | None = None,
                  rows: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The section's context (a plot and a table per task), or None when no cell has two runs. `rows`
    defaults to the history store's; a store that cannot be read leaves the section out."""
    if rows is None:
        try:
            rows = store.cell_history()
        except (store.StoreError, OSError):
            return None
    tasks = []
    with matplotlib.rc_context(RC):
        for task in dict.fromkeys(c.get("task") for c in results.get("cells") or []):
            trends = task_trends(results, task, rows)
            if not trends:
                continue
            fig = _figure(trends)
            name = f"trend-{task}"
            if png_dir is not None:
                Path(png_dir).mkdir(parents=True, exist_ok=True)
                fig.savefig(Path(png_dir) / f"{name}.png", format="png", dpi=150)
            _, first = trends[0]
            tasks.append({"name": task, "label": first.label, "metric": first.metric,
                          "lower_is_better": first.lower_is_better, "svg": figure_svg(fig, name),
                          "rows": [_row(cell, trend) for cell, trend in trends],
                          "example": trends[0][0]["id"]})
    return {"tasks": tasks} if tasks else None
