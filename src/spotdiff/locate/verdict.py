"""Where, who, and what was introduced where: conclusions from compared rows (numpy-free logic).

- `pair_verdict`: per pair, the first row above the threshold (in step order, forward → loss →
  backward → update), or "no divergence" with the largest ratio, or "no verdict" when a row
  without a ratio (NaN, missing, shapes) comes first: nothing is concluded past missing data.
- `introduced`: at the first diverging step, the tensor where the difference grows most from its
  inputs (LEMON's rate, (r - r_in) / (r_in + 1) on ratios to the floor), inputs being the layer
  before (forward), every forward output (loss, gradients), or the gradient and the previous value
  (a parameter after its update).
- `odd_one_out`: with three or more frameworks, the one every diverging pair contains while all
  pairs without it agree (LEMON's vote).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from spotdiff.locate.compare import THRESHOLD, Row


def pair_verdict(rows: list[Row], threshold: float = THRESHOLD) -> dict[str, Any]:
    """{"status": diverges | no divergence | no verdict, "first": row index, "max_ratio", "max_row"}."""
    usable = [i for i, r in enumerate(rows) if r.ratio is not None]
    worst = max(usable, key=lambda i: rows[i].ratio, default=None)
    verdict: dict[str, Any] = {"max_ratio": rows[worst].ratio if worst is not None else None,
                               "max_row": worst, "first": None, "unusable": None}
    for index, row in enumerate(rows):
        if row.ratio is None:
            verdict.update(status="no verdict", unusable=index)
            return verdict
        if row.ratio > threshold:
            verdict.update(status="diverges", first=index)
            return verdict
    verdict["status"] = "no divergence" if rows else "no verdict"
    return verdict


def _inputs(rows: list[Row], index: int) -> list[Row]:
    """The rows whose difference feeds row `index` (see the module docstring)."""
    row = rows[index]
    same_step = [r for r in rows if r.step == row.step]
    forward = [r for r in same_step if r.phase == "forward"]
    if row.phase == "forward":
        position = forward.index(row)
        if position:
            return [forward[position - 1]]
        return [r for r in rows if r.step == row.step - 1 and r.phase == "update"]
    if row.phase in ("loss", "backward"):
        return forward + [r for r in same_step if r.phase == "loss" and r is not row]
    before = [r for r in rows if r.step == row.step - 1 and r.phase == "update" and r.name == row.name]
    return [r for r in same_step if r.phase == "backward" and r.name == row.name] + before


def introduced(rows: list[Row], first: int) -> tuple[int, float]:
    """(row index, growth rate) of the tensor at the first diverging step that introduces it."""
    step = rows[first].step
    best, best_rate = first, -1.0
    for index, row in enumerate(rows):
        if row.step != step or row.ratio is None or row.ratio <= THRESHOLD:
            continue
        feeding = [r.ratio for r in _inputs(rows, index) if r.ratio is not None]
        before = max(feeding, default=0.0)
        rate = (row.ratio - before) / (before + 1.0)
        if rate > best_rate:
            best, best_rate = index, rate
    return best, best_rate


def odd_one_out(statuses: dict[tuple[str, str], str]) -> str | None:
    """The framework in every diverging pair while all pairs without it show no divergence."""
    names = sorted({n for pair in statuses for n in pair})
    if len(names) < 3:
        return None
    for name in names:
        with_it = [s for pair, s in statuses.items() if name in pair]
        without = [s for pair, s in statuses.items() if name not in pair]
        if all(s == "diverges" for s in with_it) and all(s == "no divergence" for s in without):
            return name
    return None


def pairs(names: list[str]) -> list[tuple[str, str]]:
    return list(combinations(names, 2))
