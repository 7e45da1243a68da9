"""report.html: one self-contained page per run (inline SVG and CSS; no script, no external URL).

`render_report(results, run_dir)` writes `<run_dir>/report.html` and `<run_dir>/plots/*.png`.
`summary_rows(results)` is the "which fits your needs" verdict, reusable by the terminal.
Metrics, series and labels come from each task's spec; an unknown task still renders generically.
"""

from __future__ import annotations

import json
import re
import statistics
from datetime import datetime
from pathlib import Path
from typing import Any

from spotdiff.devices import cell_device
from spotdiff.report import runs_on, static_dynamic, templating
from spotdiff.report.distributed import distributed_context
from spotdiff.report.plots import (
    Plot,
    build_plots,
    cell_label,
    finite_number,
    format_value,
    ordered_cells,
    task_spec,
    variants_of,
)
from spotdiff.report.serving import serving_context
from spotdiff.report.trend_section import trend_section
from spotdiff.report.where import section as where_section

# Criteria every task is judged on (measured by the runner), each lower-is-better.
CRITERIA = {
    "steady_step_us": "fastest steady state",
    "first_step_s": "fastest first step",
    "steps_to_converge": "fewest steps to converge",
    "peak_rss_mb": "least memory",
    "import_s": "fastest import",
}
# Table columns every task gets, before its own: (key, label, unit)
RUNTIME_COLUMNS = (
    ("steady_step_us", "steady µs/step", "µs"),
    ("first_step_s", "first step (s)", "s"),
    ("compile_s", "compile (s)", "s"),
    ("import_s", "import (s)", "s"),
    ("peak_rss_mb", "peak RSS (MB)", "MB"),
)
# Measured once per framework, whatever the mode: judged per framework, its cells' range as spread.
PER_FRAMEWORK = {"import_s"}
# An ok cell without a value here never got there (never converged): ranked last, not dropped.
NEVER_REACHED = {"steps_to_converge": "never converged"}
CLEAR_MARGIN = 0.10  # a single number must beat the runner-up by more than this fraction
RULE = (
    "Compared within one task and variant, over ok cells. A winner is named only when it is clearly "
    "ahead of the runner-up: where a metric has a measured spread (steady µs/step: min–max over the "
    "timed repeats; several seeds: their range) the two ranges must not overlap; for a single number "
    f"the runner-up must be more than {CLEAR_MARGIN:.0%} worse. Otherwise: no clear difference. "
    "Import time does not depend on the mode, so it is compared per framework, over all its cells. "
    "A cell that never converged is ranked last. Where cells ran on different devices (or --device "
    "auto fell back to the CPU), every name carries its device."
)


def _tasks(results: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(c.get("task") for c in results.get("cells") or []))


def _metric_info(task: str) -> dict[str, tuple[str, str, bool | None]]:
    """key -> (label, unit, lower_is_better) from the runner's defaults and the task's spec."""
    info: dict[str, tuple[str, str, bool | None]] = {k: (lbl, u, True) for k, lbl, u in RUNTIME_COLUMNS}
    info["steps_to_converge"] = ("steps to converge", "steps", True)
    spec = task_spec(task)
    for key, label, log_scale in spec.plotted_series if spec else ():
        info[f"final_{key}"] = (f"final {label}", "", None)
    for key, label, unit, lower_is_better in spec.headline_metrics if spec else ():
        info[key] = (label, unit, lower_is_better)
    return info


def _device_suffixes(cells: list[dict[str, Any]]) -> bool:
    """Whether names must carry their device: the ok cells ran on more than one device, or on a
    CPU that `--device auto` (or gpu) fell back to."""
    devices = {cell_device(c) for c in cells if c.get("status") == "ok"}
    return len(devices) > 1 or any(d and "(" in d for d in devices)


def _candidates(cells: list[dict[str, Any]], key: str, lower_is_better: bool) -> list[dict[str, Any]]:
    """One entry per framework-mode (or framework) with a value: the median, a spread where measured.
    Ok cells that never reached a NEVER_REACHED metric follow, value None, in the order given."""
    groups: dict[str, list[dict[str, Any]]] = {}
    never: list[str] = []
    with_device = _device_suffixes(cells)
    for cell in cells:
        metrics = cell.get("metrics") or {}
        label = cell.get("framework") if key in PER_FRAMEWORK else cell_label(cell)
        if with_device:
            label = f"{label} [{cell_device(cell) or 'device unknown'}]"
        if cell.get("status") == "ok" and finite_number(metrics.get(key)) is not None:
            groups.setdefault(label, []).append(metrics)
        elif cell.get("status") == "ok" and key in NEVER_REACHED and key in metrics and metrics[key] is None:
            never.append(label)
    never = [label for label in dict.fromkeys(never) if label not in groups]
    candidates = []
    for label, group in groups.items():
        values = [finite_number(m.get(key)) for m in group]
        lows = [finite_number(m.get(f"{key}_min")) for m in group]
        highs = [finite_number(m.get(f"{key}_max")) for m in group]
        spread = None
        if None not in lows + highs:
            spread = (min(lows + values), max(highs + values))
        elif len(values) > 1:
            spread = (min(values), max(values))
        if spread and spread[0] == spread[1]:  # one repeat measures no spread: judge by the 10% rule
            spread = None
        candidates.append({"label": label, "value": statistics.median(values), "spread": spread})
    ranked = sorted(candidates, key=lambda c: c["value"], reverse=not lower_is_better)
    return ranked + [{"label": label, "value": None, "spread": None, "never": NEVER_REACHED[key]}
                     for label in never]


def _clearly_ahead(best: dict[str, Any], second: dict[str, Any], lower_is_better: bool) -> bool:
    if second.get("never"):  # reached it vs never reached it
        return True
    if best["spread"] and second["spread"]:
        if lower_is_better:
            return best["spread"][1] < second["spread"][0]
        return best["spread"][0] > second["spread"][1]
    gap = abs(second["value"] - best["value"])
    return gap > CLEAR_MARGIN * abs(best["value"]) if best["value"] else gap > 0


def _figure(candidate: dict[str, Any] | None, unit: str) -> str | None:
    if candidate is None:
        return None
    if candidate.get("never"):
        return candidate["never"]
    text = format_value(candidate["value"], unit)
    if candidate["spread"]:
        low, high = candidate["spread"]
        text += f" ({format_value(low)}–{format_value(high)})"
    return text


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The best framework-mode per task, variant and criterion.

    Each row: task, variant, metric, criterion, best, figure, runner_up, runner_up_figure, clear
    (bool, None without two candidates) and verdict: "clear difference", "no clear difference",
    "only one result" or "no data". `best` is filled even when the difference is not clear.
    """
    rows = []
    for task in _tasks(results):
        info = _metric_info(task)
        spec = task_spec(task)
        cells = ordered_cells(results, task)
        present = {k for c in cells for k in (c.get("metrics") or {})}
        keys = [k for k in CRITERIA if k in present or not present]
        keys += [k for k, *_ in spec.headline_metrics if k not in CRITERIA] if spec else []
        for variant in variants_of(results, task):
            in_variant = [c for c in cells if c.get("variant") == variant]
            for key in keys:
                label, unit, lower = info.get(key, (key, "", True))
                lower = lower is not False
                ranked = _candidates(in_variant, key, lower)
                best = ranked[0] if ranked and not ranked[0].get("never") else None
                second = ranked[1] if best and len(ranked) > 1 else None
                clear = _clearly_ahead(best, second, lower) if best and second else None
                verdict = {True: "clear difference", False: "no clear difference"}.get(
                    clear, "only one result" if best else ranked[0]["never"] if ranked else "no data")  # type: ignore[arg-type]
                rows.append({
                    "task": task, "variant": variant, "metric": key,
                    "criterion": CRITERIA.get(key, f"best {label}"),
                    "best": best and best["label"], "figure": _figure(best, unit),
                    "runner_up": second and second["label"], "runner_up_figure": _figure(second, unit),
                    "clear": clear, "verdict": verdict,
                    "ranking": [c["label"] for c in ranked],
                })
    return rows


def parity_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per task and variant: the verdict (PASS / FAIL / not compared), each check's worst deviation
    with its pair and tolerance, the failures, and the cells that were not compared."""
    rows = []
    for task, by_variant in (results.get("parity") or {}).items():
        for variant, parity in (by_variant or {}).items():
            if not isinstance(parity, dict):
                continue
            checks = []
            if isinstance(parity.get("checks"), list):  # spotdiff.parity.compare
                for check in parity["checks"]:
                    checks.append({"name": check.get("name") or check.get("label"),
                                   "deviation": check.get("deviation"), "tol": check.get("tol"),
                                   "tolerance": check.get("tolerance"),
                                   "pair": " vs ".join(map(str, check.get("pair") or [])) or "–"})
            else:  # results.json written before the helper: max_<name>_dev, <name>_pair, <name>_tol
                for key, deviation in parity.items():
                    match = re.fullmatch(r"max_(\w+)_dev", key)
                    if match:
                        name = match.group(1)
                        pair = parity.get(f"{name}_pair") or []
                        checks.append({"name": name, "deviation": deviation, "tol": parity.get(f"{name}_tol"),
                                       "pair": " vs ".join(map(str, pair)) or "–"})
            passed = parity.get("passed")
            rows.append({"task": task, "variant": variant, "passed": passed,
                         "verdict": parity.get("verdict") or ("not compared" if passed is None else
                                                             "pass" if passed else "fail"),
                         "failed_cells": parity.get("failed_cells") or 0,
                         "not_compared": parity.get("not_compared") or [],
                         "failures": [f.get("reason", "") for f in parity.get("failures") or []],
                         "cells": parity.get("cells"), "checks": checks, "summary": parity.get("summary")})
    return rows


def _columns(results: dict[str, Any], task: str) -> list[dict[str, Any]]:
    info, spec = _metric_info(task), task_spec(task)
    present = {k for c in ordered_cells(results, task) for k in (c.get("metrics") or {})}
    keys = [k for k, *_ in RUNTIME_COLUMNS if k in present or not present]
    if spec:
        extra = [f"final_{k}" for k, *_ in spec.plotted_series if f"final_{k}" in present]
        extra += [k for k, *_ in spec.headline_metrics]
    else:
        extra = sorted(k for k in present if not re.search(r"_(min|max)$", k))
    keys += [k for k in dict.fromkeys(extra) if k not in keys]
    return [{"key": k, "label": info.get(k, (k, "", None))[0], "lower": info.get(k, ("", "", None))[2]}
            for k in keys]


def _rows(results: dict[str, Any], task: str, columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    spec, variants = task_spec(task), variants_of(results, task)
    cells = sorted(ordered_cells(results, task), key=lambda c: variants.index(c.get("variant")))
    rows = []
    for cell in cells:
        metrics = dict(cell.get("metrics") or {})
        compiling = spec.compiling_modes.get(cell.get("framework"), ()) if spec else ()
        if spec and spec.compiling_modes and cell.get("mode") not in compiling:
            metrics["compile_s"] = None  # an eager mode's first-step overhead is not a compile
        values = []
        for column in columns:
            key = column["key"]
            low, high = finite_number(metrics.get(f"{key}_min")), finite_number(metrics.get(f"{key}_max"))
            measured = low is not None and high is not None and low != high
            spread = f"{format_value(low)}–{format_value(high)}" if measured else None
            text = format_value(metrics.get(key), digits=6 if key.startswith("final_") else 3)
            values.append({"text": text, "spread": spread, "best": False})
        help_text = spec.mode_help.get((cell.get("framework"), cell.get("mode")), "") if spec else ""
        rows.append({**cell, "metrics": metrics, "label": cell_label(cell), "values": values,
                     "mode_help": help_text, "device": cell_device(cell)})
    for index, column in enumerate(columns):  # mark a unique best per variant and column
        for variant in variants:
            ok = [(r, finite_number((r.get("metrics") or {}).get(column["key"]))) for r in rows
                  if r.get("variant") == variant and r.get("status") == "ok"]
            ok = [(r, v) for r, v in ok if v is not None]
            if column["lower"] is None or len(ok) < 2:
                continue
            best = (min if column["lower"] else max)(v for _, v in ok)
            winners = [r for r, v in ok if v == best]
            if len(winners) == 1:
                winners[0]["values"][index]["best"] = True
    return rows


def repeats_label(experiment: dict[str, Any]) -> Any:
    """`--repeats N`: N; adaptive repeats (no --repeats): the rule, as docs/measurement.md states it."""
    if experiment.get("repeats") is not None or "max_repeats" not in experiment:
        return experiment.get("repeats")
    bound = experiment.get("spread_bound", 0.05) * 100
    return (f"adaptive: 3 to {experiment['max_repeats']}, until the median's interval is within "
            f"±{bound:g} % or {experiment.get('repeat_budget_s', 4.0):g} s are spent")


def _environment(results: dict[str, Any]) -> dict[str, Any]:
    env, experiment = results.get("environment") or {}, results.get("experiment") or {}
    cores, usable = env.get("cpu_cores"), env.get("cpu_affinity_cores")
    used = sorted({str((c.get("environment") or {}).get("settings", {}).get("device_name"))
                   for c in results.get("cells") or []
                   if (c.get("environment") or {}).get("settings", {}).get("device_name")})
    device = str(env.get("device", "–")) + (f" (used: {', '.join(used)})" if used else "")
    items = [
        ("CPU", env.get("cpu_model")),
        ("cores", f"{cores} ({usable} usable)" if usable and usable != cores else cores),
        ("threads", env.get("threads")), ("device", device), ("dtype", env.get("dtype")),
        ("Python", env.get("python")), ("platform", env.get("platform")),
        ("seed", experiment.get("seed")), ("repeats", repeats_label(experiment)),
    ]
    per_framework = {}
    for cell in results.get("cells") or []:
        cell_env = cell.get("environment") or {}
        entry = per_framework.setdefault(cell.get("framework"), {"versions": {}, "settings": {}})
        entry["versions"].update(cell_env.get("versions") or {})
        settings = cell_env.get("settings") or {}
        entry["settings"].update({k: v for k, v in settings.items() if k != "cpu_affinity"})
    return {
        "items": [(k, v) for k, v in items if v not in (None, "")],
        "versions": env.get("frameworks") or {},
        "flags": env.get("flags") or {},
        "overrides": experiment.get("overrides") or {},
        "per_framework": {k: v for k, v in per_framework.items() if v["versions"] or v["settings"]},
    }


def _when(results: dict[str, Any]) -> tuple[str, str | None]:
    env = results.get("environment") or {}
    started, finished = env.get("started_at"), env.get("finished_at")
    try:
        seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
        duration = f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"
    except (TypeError, ValueError):
        duration = None
    return (str(started).replace("T", " ") if started else "–"), duration


def report_context(results: dict[str, Any], plots: list[Plot]) -> dict[str, Any]:
    """Everything the template shows, computed here so the template only lays it out."""
    summary = summary_rows(results)
    tasks = []
    for task in _tasks(results):
        spec, columns = task_spec(task), _columns(results, task)
        cells = ordered_cells(results, task)
        variants = [
            {"name": v, "plots": [p for p in plots if p.task == task and p.variant == v]}
            for v in variants_of(results, task)
        ]
        criteria: dict[str, dict[str, Any]] = {}
        for row in (r for r in summary if r["task"] == task):
            criteria.setdefault(row["criterion"], {})[row["variant"]] = row
        tasks.append({
            "name": task, "summary": spec.summary if spec else "task unknown to this spotdiff version",
            "variants": variants, "criteria": criteria,
            "speed_plots": [p for p in plots if p.task == task and p.kind == "speed"],
            "columns": columns, "rows": _rows(results, task, columns),
            "counts": {s: sum(c.get("status") == s for c in cells) for s in ("ok", "failed", "skipped")},
        })
    started, duration = _when(results)
    return {
        "run_id": results.get("run_id", "–"), "status": results.get("status", "–"),
        "started": started, "duration": duration, "env": _environment(results),
        "rule": RULE, "parity": parity_rows(results), "tasks": tasks,
        "version": (results.get("environment") or {}).get("spotdiff", ""),
        "static_dynamic": static_dynamic.section(results),
        "runs_on": runs_on.section(results),  # X on Y vs Y (Keras on each backend): None without any
        "serving": serving_context(results),  # spotdiff loadtest: None for training runs
        "distributed": distributed_context(results),  # --workers N cells: None without any
    }


def where_context(run_dir: Path) -> dict[str, Any] | None:
    """The "Where and why" section when the run folder holds a `spotdiff where` result (where.json),
    else None; an unreadable where.json is left out, not fatal to the report."""
    try:
        document = json.loads((Path(run_dir) / "where.json").read_text(encoding="utf-8"))
        return where_section(document, document.get("summary", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def render_report(results: dict[str, Any], run_dir: Path) -> Path:
    """Write `<run_dir>/report.html` (self-contained) and `<run_dir>/plots/*.png`; the HTML path."""
    run_dir = Path(run_dir)
    plots = build_plots(results, run_dir / "plots")
    context = {**report_context(results, plots), "where": where_context(run_dir),
               "trend": trend_section(results, run_dir / "plots")}  # None: no cell seen before
    html = templating.environment().get_template("report.html").render(**context)
    path = run_dir / "report.html"
    path.write_text(html, encoding="utf-8")
    return path
