"""Plots of a run: each task's curves per variant and its speed charts, as inline SVG and PNG.

Only matplotlib's object API is used (`Figure`, no pyplot), so nothing leaks into global state.
What to plot comes from the task spec (`plotted_series`, `headline_metrics`); a task unknown to the
registry still gets its series plotted, labelled by their keys.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from spotdiff.errors import UserError
from spotdiff.overrides import params_for
from spotdiff.report.cells import cell_label, mode_index, ordered_cells, task_spec
from spotdiff.report.images import misclassified_figure
from spotdiff.tasks.base import TaskSpec

matplotlib.use("Agg")  # no display, ever; figures are built with the object API only

MAX_POINTS = 500  # per line in a plot; first and last step are always kept
# One colour family per framework; modes of a framework take its shades in turn.
SHADES = {
    "torch": ("#e8431f", "#a3260c", "#f4845f", "#c2410c"),
    "tensorflow": ("#f59f00", "#b86e00", "#ffc53d", "#8a5300"),
    "jax": ("#3b5bdb", "#7048e8", "#1c7ed6", "#4a2a9c"),
}
OTHER_SHADES = ("#495057", "#868e96", "#212529", "#adb5bd")
LINE_STYLES = ("-", (0, (6, 2)), (0, (1.5, 1.5)), (0, (7, 2, 1.5, 2)), (0, (3, 3)))
SPEED_METRICS = (("steady_step_us", "steady µs/step", "µs"), ("first_step_s", "first step (s)", "s"))
RC = {
    "svg.fonttype": "none",  # real <text>: smaller SVG, selectable, styled by the page's fonts
    "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"],
    "font.size": 10, "legend.fontsize": 9, "axes.titlesize": 11, "axes.titleweight": "bold",
    "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": "#868e96",
    "axes.grid": True, "axes.axisbelow": True, "grid.color": "#e9ecef", "grid.linewidth": 0.8,
}


@dataclass(frozen=True)
class Plot:
    """One rendered figure: `svg` is inline-ready markup, `png` its copy on disk (or None)."""

    name: str  # file stem, unique within a run
    task: str
    variant: str | None  # None when the plot covers every variant
    kind: str  # "series" or "speed"
    title: str
    svg: str
    png: Path | None


def format_value(value: Any, unit: str = "", digits: int = 3) -> str:
    """A number as people read it: `digits` significant digits, thousands separators, '–' if missing."""
    number = finite_number(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if number is None:
        return "–" if value is None or isinstance(value, float) else str(value)
    magnitude = abs(number)
    if isinstance(value, int):
        text = f"{value:,}"
    elif digits != 3 and number != 0:
        text = f"{number:.{digits}g}"
    elif magnitude >= 1000 or number == 0:
        text = f"{number:,.0f}"
    elif magnitude >= 100:
        text = f"{number:.0f}"
    else:
        text = f"{number:.3g}" if magnitude >= 1e-4 else f"{number:.2e}"
    return f"{text} {unit}" if unit and unit != "steps" else text


def finite_number(value: Any) -> float | None:
    """`value` as a float when it is a finite number (bools are not numbers here), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def reference_value(results: dict[str, Any], task: str, key: str) -> float | None:
    """The true value of series `key`: the task's `true_<key>` param (with the run's overrides)."""
    spec = task_spec(task)
    if spec is None:
        return None
    value = spec.references.get(key)
    overrides = (results.get("experiment") or {}).get("overrides") or {}
    field = f"true_{key}"
    if field in spec.params.model_fields:
        try:
            value = getattr(params_for(spec, overrides), field)
        except UserError:  # a bad override must not break a report
            value = spec.params.model_fields[field].default
    return finite_number(value)


def variants_of(results: dict[str, Any], task: str) -> list[str]:
    """The variants of `task` in this run, in the spec's order."""
    return list(dict.fromkeys(c.get("variant") for c in ordered_cells(results, task)))


def _style(cell: dict[str, Any], cells: list[dict[str, Any]]) -> tuple[str, Any]:
    index = mode_index(cell, task_spec(cell.get("task", "")), cells)
    shades = SHADES.get(cell.get("framework", ""), OTHER_SHADES)
    return shades[index % len(shades)], LINE_STYLES[index % len(LINE_STYLES)]


def downsample(values: list[Any], max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(steps from 1, values) with at most `max_points` evenly spaced points, first and last kept."""
    y = np.array([np.nan if v is None else v for v in values], dtype=float)
    steps = np.arange(1, len(y) + 1)
    if len(y) <= max_points:
        return steps, y
    keep = np.unique(np.linspace(0, len(y) - 1, max_points).round().astype(int))
    return steps[keep], y[keep]


def series_figure(
    results: dict[str, Any], task: str, variant: str, key: str, label: str, log_scale: bool
) -> Figure | None:
    """Series `key` against step: one line per ok cell of (task, variant); None when none has it."""
    all_cells = ordered_cells(results, task)
    cells = [c for c in all_cells if c.get("variant") == variant and c.get("status") == "ok"
             and (c.get("series") or {}).get(key)]
    if not cells:
        return None
    with_seed = len({c.get("seed") for c in cells}) > 1
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.add_subplot()
    positive = False
    for i, cell in enumerate(cells):
        steps, values = downsample(cell["series"][key])
        positive = positive or bool(np.any(values > 0))
        colour, style = _style(cell, all_cells)
        # Earlier lines drawn wider, so identical trajectories stay visible underneath later ones.
        width = max(1.1, 3.2 - 2.1 * i / max(1, len(cells) - 1))
        ax.plot(steps, values, label=cell_label(cell, with_seed), color=colour, linestyle=style,
                linewidth=width, alpha=0.9)
    reference = reference_value(results, task, key)
    if reference is not None:
        ax.axhline(reference, color="#212529", linestyle=(0, (4, 3)), linewidth=1,
                   label=f"true {key} = {reference:g}")
    if log_scale and positive:
        ax.set_yscale("log", nonpositive="mask")
    ax.set_xlabel("step")
    ax.set_ylabel(label + (" (log)" if log_scale and positive else ""))
    ax.set_title(f"{task} · {variant} · {label}", loc="left")
    ax.legend(ncol=2 if len(cells) > 5 else 1, framealpha=0.92, edgecolor="#dee2e6")
    return fig


def speed_figure(results: dict[str, Any], task: str, key: str, label: str, unit: str) -> Figure | None:
    """Horizontal bars of metric `key` (log x), one per cell, one panel per variant; error bars
    span `<key>_min`..`<key>_max` where recorded. None when no cell has the metric."""
    cells = ordered_cells(results, task)
    positive = [v for c in cells if (v := finite_number((c.get("metrics") or {}).get(key))) and v > 0]
    if not positive:
        return None
    variants = variants_of(results, task)
    groups = [[c for c in cells if c.get("variant") == v] for v in variants]
    highs = [finite_number((c.get("metrics") or {}).get(key + "_max")) or 0 for c in cells]
    left = 10 ** math.floor(math.log10(min(positive) / 1.5))
    right = max(positive + highs) * 5  # room for the value labels
    height = 0.7 + sum(0.27 * len(g) + 0.45 for g in groups)
    fig = Figure(figsize=(6.4, height), layout="constrained")
    axes = fig.subplots(len(groups), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [len(g) for g in groups]})[:, 0]
    for ax, variant, group in zip(axes, variants, groups):
        with_seed = len({c.get("seed") for c in group}) > 1
        for row, cell in enumerate(group):
            metrics = cell.get("metrics") or {}
            value = finite_number(metrics.get(key))
            if value is None or value <= 0:
                why = cell.get("status") if cell.get("status") != "ok" else "no value"
                ax.text(left * 1.15, row, why, va="center", fontsize=9, color="#868e96", style="italic")
                continue
            colour, _ = _style(cell, cells)
            ax.barh(row, value - left, left=left, height=0.68, color=colour)
            low, high = finite_number(metrics.get(key + "_min")), finite_number(metrics.get(key + "_max"))
            if low is not None and high is not None:
                xerr = [[max(0.0, value - low)], [max(0.0, high - value)]]
                ax.errorbar(value, row, xerr=xerr, fmt="none", ecolor="#212529", elinewidth=1, capsize=2.5)
            ax.text(max(value, high or 0) * 1.12, row, format_value(value, unit), va="center", fontsize=9)
        ax.set_yticks(range(len(group)), [cell_label(c, with_seed) for c in group])
        ax.set(ylim=(len(group) - 0.5, -0.5), xscale="log", xlim=(left, right))
        ax.grid(axis="y", visible=False)
        ax.set_title(f"{task} · {variant}", loc="left")
    _plain_log_ticks(axes[-1], math.log10(right / left))
    axes[-1].set_xlabel(f"{label}, log scale (lower is better)")
    return fig


def _plain_log_ticks(ax: Any, decades: float) -> None:
    """Label a log x axis 0.1, 0.2, 0.5, 1 rather than 10⁻¹, 2×10⁻¹, 3×10⁻¹: matplotlib's own minor
    labels collide on an axis of about one decade. Labels at 2 and 5 only where there is room."""
    coefficients = (2, 5) if decades <= 3 else ()

    def minor(x: float, _pos: int) -> str:
        return f"{x:g}" if round(x / 10 ** math.floor(math.log10(x) + 1e-9)) in coefficients else ""

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(minor))


def figure_svg(fig: Figure, salt: str) -> str:
    """The figure as an <svg> element for inlining: no XML prolog, metadata or namespace URLs;
    element ids are salted with `salt` so several SVGs can share one page."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)
    referenced = set(re.findall(r"#([\w.-]+)", svg))  # keep only ids something points to
    return re.sub(r' id="([^"]*)"', lambda m: m.group(0) if m.group(1) in referenced else "", svg)


def _file_stem(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts))


def build_plots(results: dict[str, Any], png_dir: Path | None = None) -> list[Plot]:
    """Every plot of the run, task by task: per variant its series, then the speed charts.

    With `png_dir`, a PNG copy of each plot is written there (created when missing).
    """
    png_dir = Path(png_dir) if png_dir is not None else None
    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
    plots: list[Plot] = []
    tasks = dict.fromkeys(c.get("task") for c in results.get("cells") or [])
    with matplotlib.rc_context(RC):  # styles apply when artists are created, not when saved
        for task in tasks:
            plots += _task_plots(results, task, png_dir)
    return plots


def _task_plots(results: dict[str, Any], task: str, png_dir: Path | None) -> list[Plot]:
    plots: list[Plot] = []
    spec = task_spec(task)
    wanted: list[tuple[str | None, str, str, Figure | None]] = []
    for variant in variants_of(results, task):
        for key, label, log_scale in _series_keys(results, task, spec):
            figure = series_figure(results, task, variant, key, label, log_scale)
            wanted.append((variant, _file_stem(task, variant, key), label, figure))
        wanted.append((variant, _file_stem(task, variant, "misclassified"), "misclassified",
                       misclassified_figure(results, task, variant)))
    labels = {k: (lbl, unit) for k, lbl, unit, _ in spec.headline_metrics} if spec else {}
    for key, label, unit in SPEED_METRICS:
        label, unit = labels.get(key, (label, unit))
        wanted.append((None, _file_stem(task, "speed", key), label,
                       speed_figure(results, task, key, label, unit)))
    for variant, name, title, figure in wanted:
        if figure is None:
            continue
        svg = figure_svg(figure, name)
        png = png_dir / f"{name}.png" if png_dir is not None else None
        if png is not None:
            figure.set_layout_engine("none")  # laid out for the SVG already; halves the time
            figure.savefig(png, format="png", dpi=150)
        kind = "speed" if variant is None else "images" if title == "misclassified" else "series"
        plots.append(Plot(name, task, variant, kind, title, svg, png))
    return plots


def _series_keys(results: dict[str, Any], task: str, spec: TaskSpec | None) -> list[tuple[str, str, bool]]:
    if spec is not None and spec.plotted_series:
        return list(spec.plotted_series)
    keys = dict.fromkeys(k for c in ordered_cells(results, task) for k in (c.get("series") or {}))
    return [(key, key, False) for key in keys]


def write_plot_pngs(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write every plot of the run as `<out_dir>/<name>.png` (usually `<run_dir>/plots`); the paths."""
    return [plot.png for plot in build_plots(results, out_dir) if plot.png is not None]
