"""`spotdiff history --trend`: one metric of one cell across runs, as a table and a plot file."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from rich.table import Table

from spotdiff.errors import UserError
from spotdiff.report.compare import figure
from spotdiff.report.plots import RC
from spotdiff.trend import Trend

PLOT_SUFFIXES = (".png", ".svg")


def trend_table(trend: Trend) -> Table:
    """One row per stored run, oldest first: when, run, cell, status, framework version, value."""
    direction = {True: " (lower is better)", False: " (higher is better)"}.get(trend.lower_is_better, "")
    table = Table(title=f"{trend.cell}: {trend.label}{direction}", title_justify="left")
    for name in ("started", "run", "cell", "status", "version", trend.label):
        table.add_column(name, justify="right" if name == trend.label else "left")
    for point in trend.points:
        table.add_row(point.started_at or "", point.run_id, point.cell_id, point.status or "",
                      point.version or "", figure(point.value, point.low, point.high, trend.unit))
    return table


def default_plot_path(folder: Path, trend: Trend) -> Path:
    return Path(folder) / (re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{trend.cell}-{trend.metric}") + ".png")


def write_trend_plot(trend: Trend, path: Path) -> Path:
    """The values in run order with their min–max as error bars, to `path` (.png or .svg)."""
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise UserError(f"--plot {path}: the file name must end in .png or .svg")
    with matplotlib.rc_context(RC):
        fig = _figure(trend)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=110, metadata={"Date": None} if path.suffix.lower() == ".svg" else None)
        except OSError as error:
            raise UserError(f"cannot write the plot {path}: {error.strerror or error}") from None
    return path


def _figure(trend: Trend) -> Figure:
    shown = [(rank, p) for rank, p in enumerate(trend.points) if p.value is not None]
    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    if shown:
        values = [p.value for _, p in shown]
        below = [p.value - p.low if p.low is not None else 0.0 for _, p in shown]
        above = [p.high - p.value if p.high is not None else 0.0 for _, p in shown]
        ax.errorbar([rank for rank, _ in shown], values, yerr=[below, above], marker="o", capsize=3,
                    color="#3b5bdb")
    ax.set_xticks(range(len(trend.points)))
    ax.set_xticklabels([(p.started_at or p.run_id)[:16] for p in trend.points], rotation=30, ha="right",
                       fontsize=8)
    unit = f" ({trend.unit})" if trend.unit and trend.unit not in trend.label else ""
    ax.set_ylabel(trend.label + unit)
    ax.set_title(trend.cell)
    return fig
