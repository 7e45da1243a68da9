"""The "Where and why" section: a layer x step heat map of difference / floor per pair of
frameworks, the first divergence marked, the causes tried and what recording cost.

`section(result)` builds what `_where.html` shows from a `spotdiff where` result (where.json);
`render_where(result, out_dir)` writes the standalone where.html.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from spotdiff.report import templating

PHASE_LABEL = {"forward": "fwd", "loss": "loss", "backward": "grad", "update": "param"}


def _colour(ratio: float | None, threshold: float) -> str:
    """White at or below 1e-3 x the floor, through yellow at the threshold, to red at 1e3 x it."""
    if ratio is None:
        return "#bbbbbb"
    level = (math.log10(max(ratio, 1e-12)) + 3) / (3 + 3)  # 1e-3 -> 0, 1e3 -> 1
    level = min(max(level, 0.0), 1.0)
    if ratio <= threshold:
        return f"hsl(50, 90%, {98 - 30 * level:.0f}%)"
    return f"hsl({40 - 40 * level:.0f}, 85%, {62 - 12 * level:.0f}%)"


def heat_map(pair: str, verdict: dict[str, Any], threshold: float, steps: int,
             first_key: str | None) -> dict[str, Any]:
    """Rows = tensors in step order (forward layers, loss, gradients, parameters), columns = steps."""
    names: list[tuple[str, str]] = []
    cells: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for row in verdict["rows"]:
        label = (row["phase"], row["name"])
        if label not in cells:
            names.append(label)
            cells[label] = {}
        ratio = row["ratio"]
        cells[label][row["step"]] = {
            "colour": _colour(ratio, threshold), "first": row["key"] == first_key,
            "text": "–" if ratio is None else f"{ratio:.2g}",
            "title": (f"{row['key']}: diff64 {row['diff64']}, diff32 {row['diff32']}, floor {row['floor']}"
                      + (f" ({row['note']})" if row["note"] else "")),
        }
    grid = [{"label": f"{PHASE_LABEL[p]} {n}", "cells": [cells[(p, n)].get(s) for s in range(steps)]}
            for p, n in names]
    return {"pair": pair.replace("|", " vs "), "status": verdict["status"], "max_ratio": verdict["max_ratio"],
            "rows": grid}


def section(result: dict[str, Any] | None, summary: str = "") -> dict[str, Any] | None:
    """What the template shows; None without a where result."""
    if not result:
        return None
    base = result["base"]
    first_key = (base.get("first") or {}).get("row", {}).get("key")
    maps = [heat_map(pair, verdict, result["threshold"], result["steps"], first_key)
            for pair, verdict in base["pairs"].items()]
    return {"task": result["task"], "summary": summary, "status": base["status"],
            "steps": list(range(result["steps"])),
            "threshold": result["threshold"], "maps": maps, "causes": result["causes"],
            "failures": base["failures"], "odd_one_out": base["odd_one_out"],
            "cost": result.get("cost", {}), "modes": result["modes"]}


def render_where(result: dict[str, Any], out_dir: Path, summary: str) -> Path:
    """Write `<out_dir>/where.html` (self-contained) and return its path."""
    html = templating.environment().get_template("where.html").render(where=section(result, summary))
    path = Path(out_dir) / "where.html"
    path.write_text(html, encoding="utf-8")
    return path
