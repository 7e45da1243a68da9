"""`spotdiff compare` output files: compare.html (self-contained, no script) and compare.json.

`write_comparison(comparison, out_dir, ...)` writes both into a folder that `prepare_out_dir` has
checked: it must not exist or be empty, unless `overwrite` (then only those two files are replaced).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spotdiff.compare import VERDICTS, Comparison, MetricRow
from spotdiff.errors import UserError
from spotdiff.report import templating
from spotdiff.report.plots import format_value

HTML_NAME, JSON_NAME = "compare.html", "compare.json"
RULE = ("A metric changed beyond noise only when the two spreads (min–max over the timed repeats, or "
        "the range over several seeds) do not overlap and the ratio B/A is beyond the threshold, as "
        "asv compare decides. A value without a spread is shown, never judged (identical values are "
        "unchanged); nor is a missing or NaN one. A cell that now fails and a parity check that now "
        "fails count as worse.")


def prepare_out_dir(out_dir: Path, overwrite: bool) -> Path:
    """`out_dir`, created; UserError when it is a file, or a folder with files and no `overwrite`."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; give a folder for compare.html and compare.json")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"--out {out_dir} is not empty; pass --overwrite to replace its compare.html "
                        f"and compare.json, or choose another folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create --out {out_dir}: {error.strerror or error}") from None
    return out_dir


def figure(value: float | None, low: float | None, high: float | None, unit: str) -> str:
    """'120 µs (119–121)': the value and its spread, '–' when missing."""
    text = format_value(value, unit)
    if value is not None and low is not None and high is not None and low < high:
        text += f" ({format_value(low)}–{format_value(high)})"
    return text


def ratio_text(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:.2f}x"


def metric_cells(row: MetricRow) -> dict[str, str]:
    """A metric row as the terminal and the page show it."""
    return {"cell": row.cell, "metric": row.label, "a": figure(row.a, row.a_min, row.a_max, row.unit),
            "b": figure(row.b, row.b_min, row.b_max, row.unit), "ratio": ratio_text(row.ratio),
            "verdict": row.verdict, "reason": row.reason}


def compare_context(comparison: Comparison, path_a: Path, path_b: Path) -> dict[str, Any]:
    order = {verdict: rank for rank, verdict in enumerate(VERDICTS)}
    rows = sorted(comparison.metrics, key=lambda row: order[row.verdict])  # stable: cell order kept
    return {"comparison": comparison, "counts": comparison.counts(), "rule": RULE,
            "path_a": str(path_a), "path_b": str(path_b), "rows": [metric_cells(row) for row in rows]}


def write_comparison(comparison: Comparison, out_dir: Path, path_a: Path, path_b: Path) -> tuple[Path, Path]:
    """Write compare.html and compare.json (every row) into `out_dir`; their paths."""
    template = templating.environment().get_template("compare.html")
    html = template.render(**compare_context(comparison, path_a, path_b))
    html_path, json_path = Path(out_dir) / HTML_NAME, Path(out_dir) / JSON_NAME
    html_path.write_text(html, encoding="utf-8")
    data = comparison.to_dict()
    data["run_a"] = {"run_id": comparison.run_a, "path": str(path_a)}
    data["run_b"] = {"run_id": comparison.run_b, "path": str(path_b)}
    json_path.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    return html_path, json_path
