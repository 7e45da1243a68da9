"""The data-parallel section of a report: every `--workers N` cell (metrics `workers` > 1).

`distributed_context(results)` is what the HTML partial `_distributed.html` lays out; None when
the run has no data-parallel cell.
"""

from __future__ import annotations

import re
from typing import Any

from spotdiff.report.plots import format_value

WORKERS_ID = re.compile(r"-w\d+$")  # cell ids of --workers N cells end in -wN (experiment.expand)
NOTE = (
    "Each cell runs its N-worker process group and then a one-worker reference group with the same "
    "engine, the same global batch and one worker's share of the cores. Images/s: global images per "
    "second over the steady epochs (the first left out). Scaling efficiency = images/s(N) / (N × "
    "images/s(1)). Startup: from launching the ranks until every rank's process group was ready "
    "(interpreter, framework import and group initialisation). Peak RSS: each worker process's own."
)


def _row(cell: dict[str, Any]) -> dict[str, Any]:
    m, series = cell.get("metrics") or {}, cell.get("series") or {}
    rss = series.get("worker_peak_rss_mb") or []
    return {
        "framework": cell.get("framework"),
        "mode": cell.get("mode"),
        "status": cell.get("status"),
        "error": cell.get("error"),
        "engine": m.get("engine", "–"),
        "backend": m.get("collective_backend", "–"),
        "workers": m.get("workers", "–"),
        "cores": m.get("cores_per_worker", "–"),
        "images_per_s": format_value(m.get("steady_images_per_s")),
        "reference_images_per_s": format_value(m.get("reference_images_per_s")),
        "efficiency": format_value(m.get("scaling_efficiency")),
        "startup_s": format_value(m.get("startup_s")),
        "group_init_s": format_value(m.get("group_init_s")),
        "rss": " / ".join(format_value(v) for v in rss) or "–",
        "accuracy": format_value(m.get("test_accuracy")),
        "reference_accuracy": format_value(m.get("reference_test_accuracy")),
    }


def distributed_context(results: dict[str, Any]) -> dict[str, Any] | None:
    """Rows for every data-parallel cell (ok or failed), in results order; None without any."""
    cells = [
        c
        for c in results.get("cells") or []
        if WORKERS_ID.search(str(c.get("id", ""))) or (c.get("metrics") or {}).get("workers", 1) > 1
    ]
    if not cells:
        return None
    return {"rows": [_row(c) for c in cells], "note": NOTE}
