"""The report's "Static vs dynamic" section: the cells of every task declaring "static_dynamic" in
its `report_sections` (padding strategies, tree-structured networks) side by side, with a chart of
epoch time against padding waste for the tasks declaring "padding_chart".

`section(results)` returns what the template shows, or None when the run has no such cells.
"""

from __future__ import annotations

from typing import Any

import matplotlib
from matplotlib.figure import Figure

from spotdiff.report.plots import (
    RC,
    _style,
    cell_label,
    figure_svg,
    finite_number,
    format_value,
    ordered_cells,
    task_spec,
)
from spotdiff.tasks.base import TaskSpec


def section_tasks(results: dict[str, Any], section: str) -> list[str]:
    """The tasks of the run's cells that declare `section` in their spec's `report_sections`."""
    tasks = dict.fromkeys(str(c.get("task")) for c in results.get("cells") or [])
    return [t for t in tasks if (spec := task_spec(t)) is not None and section in spec.report_sections]


def throughput(spec: TaskSpec) -> tuple[str, str]:
    """(metric, unit) of the table's throughput column: the spec's first `*_per_s` headline metric."""
    rates = [(key, unit) for key, _, unit, _ in spec.headline_metrics if key.endswith("_per_s")]
    return rates[0] if rates else ("", "")


def section_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per cell of a static-vs-dynamic task, in each task's framework and mode order."""
    rows = []
    for task in section_tasks(results, "static_dynamic"):
        spec = task_spec(task)
        assert spec is not None  # section_tasks keeps known tasks only
        key, unit = throughput(spec)
        for cell in ordered_cells(results, task):
            metrics = cell.get("metrics") or {}
            rows.append({
                "task": task, "framework": cell.get("framework"), "mode": cell.get("mode"),
                "status": cell.get("status"), "error": cell.get("error"),
                "strategy": spec.mode_help.get((cell.get("framework"), cell.get("mode")), ""),
                "padding_waste": format_value(metrics.get("padding_waste")),
                "throughput": format_value(metrics.get(key), unit),
                "epoch_s": format_value(metrics.get("epoch_s"), "s"),
                "first_epoch_s": format_value(metrics.get("first_epoch_s"), "s"),
                "compilations": format_value(metrics.get("compilations")),
                "accuracy": format_value(metrics.get("test_accuracy")),
            })
    return rows


def waste_figure(results: dict[str, Any]) -> Figure | None:
    """Steady epoch time against padding waste, one labelled point per ok cell of a task declaring
    "padding_chart"; None when no cell has both numbers."""
    tasks = section_tasks(results, "padding_chart")
    cells = [cell for task in tasks for cell in ordered_cells(results, task)]
    points = []
    for cell in cells:
        metrics = cell.get("metrics") or {}
        waste, epoch = finite_number(metrics.get("padding_waste")), finite_number(metrics.get("epoch_s"))
        if cell.get("status") == "ok" and waste is not None and epoch is not None:
            points.append((cell, waste, epoch))
    if not points:
        return None
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    x_span = max(w for _, w, _ in points) - min(w for _, w, _ in points) or 1.0
    y_span = max(e for _, _, e in points) or 1.0
    placed: list[tuple[float, float]] = []
    for cell, waste, epoch in points:
        colour, _ = _style(cell, cells)
        ax.scatter(waste, epoch, s=46, color=colour, edgecolor="#212529", linewidth=0.6, zorder=3)
        # A label next to an earlier one (cells of equal waste and time) goes below its point instead.
        crowded = any(abs(waste - x) < 0.05 * x_span and abs(epoch - y) < 0.06 * y_span for x, y in placed)
        ax.annotate(cell_label(cell), (waste, epoch), xytext=(6, -11 if crowded else 4),
                    textcoords="offset points", fontsize=8.5)
        placed.append((waste, epoch))
    ax.set_xlabel("padding waste (computed / real timesteps; 1 = none)")
    ax.set_ylabel("steady epoch time (s)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=min(0.9, ax.get_xlim()[0]), right=ax.get_xlim()[1] * 1.12)  # room for labels
    ax.set_title(f"{', '.join(tasks)} · epoch time vs padding waste", loc="left")
    return fig


def section(results: dict[str, Any]) -> dict[str, Any] | None:
    """Rows and the chart (inline SVG, or None) for the template; None without any such cell."""
    rows = section_rows(results)
    if not rows:
        return None
    with matplotlib.rc_context(RC):
        figure = waste_figure(results)
    return {"rows": rows, "chart": figure_svg(figure, "static-dynamic") if figure is not None else None}
