"""One metric of one cell across the runs in the history store (`spotdiff history --trend`).

A cell is named by its id (`exponent-jax-jit-manual-s0`) or as task/framework/mode/variant
(`exponent/jax/jit/manual`, every seed). `cell_trend` works on the rows `store.cell_history()`
returns, oldest run first; an unknown cell or metric is a UserError naming the valid choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spotdiff.compare import cell_key, finite, metric_info, metric_keys
from spotdiff.errors import UserError


@dataclass(frozen=True)
class TrendPoint:
    run_id: str
    started_at: str | None
    cell_id: str
    status: str | None
    version: str | None  # the cell's framework version in that run
    value: float | None  # None: failed, skipped, NaN or not recorded
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Trend:
    cell: str
    metric: str
    label: str
    unit: str
    lower_is_better: bool | None
    points: list[TrendPoint]


def _choices(names: list[str], limit: int = 40) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def cell_rows(selector: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the cell `selector` names; UserError listing the cells there are."""
    if not rows:
        raise UserError("no runs recorded yet in the history store; `spotdiff run` records one")
    matched = [row for row in rows if selector in (row.get("cell_id"), cell_key(row))]
    if not matched:
        cells = sorted({cell_key(row) for row in rows})
        raise UserError(f"no cell {selector!r} in the history store; choose from: {_choices(cells)} "
                        f"(or a cell id such as {rows[-1].get('cell_id')})")
    return matched


def cell_trend(selector: str, metric: str | None, rows: list[dict[str, Any]]) -> Trend:
    """`metric` of the cell `selector` in every stored run that has it, oldest first."""
    matched = cell_rows(selector, rows)
    info = metric_info(str(matched[0].get("task")))
    metrics = metric_keys(matched, info)
    if metric not in metrics:
        what = f"no metric {metric!r}" if metric else "--trend needs --metric NAME"
        raise UserError(f"{what} for {selector}; choose from: {_choices(metrics) or 'none recorded'}")
    points = []
    for row in matched:
        values = row.get("metrics") or {}
        framework = str(row.get("framework"))
        points.append(TrendPoint(
            run_id=str(row.get("run_id")), started_at=row.get("started_at"), cell_id=str(row.get("cell_id")),
            status=row.get("status"), version=(row.get("versions") or {}).get(framework),
            value=finite(values.get(metric)), low=finite(values.get(f"{metric}_min")),
            high=finite(values.get(f"{metric}_max"))))
    label, unit, lower_is_better = info.get(metric, (metric, "", None))
    return Trend(selector, metric, label, unit, lower_is_better, points)
