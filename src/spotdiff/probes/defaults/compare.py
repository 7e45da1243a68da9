"""Turn what the children measured into findings: deviations between frameworks, the convention
each framework follows (by matching numpy references), and the cause of a difference that stays.

Nothing here knows which framework does what: conventions are found by running every reference
variant (reference.py) on the same inputs and keeping the one that reproduces the measurement.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spotdiff.hparams import NAMES
from spotdiff.probes.defaults import initcheck, reference
from spotdiff.probes.defaults.components import COMPONENTS, layer_case, optimizer_case

TOLERANCE = 1e-4  # max relative deviation that still counts as the same behaviour (float32)
MATCH_TOLERANCE = 1e-3  # a framework follows a reference convention within this deviation
STAT_TOLERANCE = 0.02  # dropout is random: drop fraction and kept value over 100k draws


def tolerance(component: str) -> float:
    return STAT_TOLERANCE if component == "dropout" else TOLERANCE


def match_tolerance(component: str) -> float:
    return STAT_TOLERANCE if component == "dropout" else MATCH_TOLERANCE


def digest(component: str, outputs: dict[str, Any]) -> dict[str, Any]:
    """Dropout outputs -> drop fraction and mean kept value (the input is all ones)."""
    if component != "dropout":
        return outputs
    y = np.asarray(outputs["y"], np.float64)
    kept = y != 0
    return {
        "drop_fraction": float(1 - kept.mean()),
        "kept_value": float(y[kept].mean()) if kept.any() else 0.0,
    }


def case_for(component: str, seed: int, steps: int) -> dict[str, np.ndarray]:
    if COMPONENTS[component].kind == "optimizer":
        return optimizer_case(seed, steps)
    return layer_case(component, seed)


def deviation(
    measured: dict[str, Any], yardstick: dict[str, Any], case: dict[str, np.ndarray]
) -> tuple[float | None, str]:
    """max |measured - yardstick| relative to how far the yardstick moves (from theta0 for an
    optimiser, from zero otherwise); (None, why) when the outputs cannot be compared."""
    worst = 0.0
    for key, expected in yardstick.items():
        if key not in measured:
            return None, f"no output {key!r}"
        got, want = np.asarray(measured[key], np.float64), np.asarray(expected, np.float64)
        if got.shape != want.shape:
            return None, f"{key} has shape {got.shape} vs {want.shape}"
        start = case["theta0"] if key == "theta" else 0.0
        scale = float(np.max(np.abs(want - start))) if want.size else 1.0
        worst = max(worst, float(np.max(np.abs(got - want))) / max(scale, 1e-30))
    return worst, ""


def diagnose(
    component: str, outputs: dict[str, Any], hp: dict[str, Any], case: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Run every convention combination of `component` with `hp`; report the one(s) that
    reproduce `outputs`: {conventions: axis -> value, explained, residual, closest}."""
    scored = []
    for combo in reference.combinations(component):
        dev, _ = deviation(outputs, reference.run(component, hp, combo, case), case)
        scored.append((float("inf") if dev is None else dev, combo))
    scored.sort(key=lambda item: item[0])
    best_dev, best = scored[0]
    matching = [combo for dev, combo in scored if dev <= match_tolerance(component)]
    conventions = {}
    for axis in COMPONENTS[component].axes:
        values = sorted({combo[axis] for combo in matching})
        conventions[axis] = values[0] if len(values) == 1 else ("either (no effect here)" if values else None)
    return {
        "conventions": conventions,
        "explained": bool(matching),
        "residual": None if best_dev == float("inf") else best_dev,
        "closest": best,
    }


def _same(values: list[Any]) -> bool:
    present = [
        v[0] if isinstance(v, list) and v and v == [v[0]] * len(v) else v for v in values if v is not None
    ]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return all(np.isclose(v, present[0], rtol=1e-6, atol=0) for v in present)
    return all(v == present[0] for v in present)


def declared_rows(component: str, entries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per neutral name: each framework's argument name and its declared default."""
    rows = []
    for neutral, natives in NAMES[component].items():
        row: dict[str, Any] = {"neutral": neutral, "frameworks": {}}
        for fw, entry in entries.items():
            native = natives.get(fw)
            name = native[0] if isinstance(native, tuple) else native
            if name is None:
                row["frameworks"][fw] = {"name": None, "default": None}
                continue
            key, found = name.split("[")[0], entry.get("declared") or {}
            default = found.get(key)
            if "[" in name and isinstance(default, list):
                default = default[int(name[:-1].split("[")[1])]
            row["frameworks"][fw] = {"name": name, "default": default, "declared": key in found}
        effective = [
            entry["modes"]["native"]["effective"].get(neutral)
            for entry in entries.values()
            if entry.get("status") == "ok" and neutral in entry["modes"]["native"]["effective"]
        ]
        present = [v for v in effective if v is not None]  # a difference needs two declared values
        row["differs"] = None if len(present) < 2 or neutral.endswith("_init") else not _same(present)
        rows.append(row)
    return rows


def _cause(component: str, diagnoses: dict[str, dict[str, Any]]) -> list[str]:
    causes = []
    for axis in COMPONENTS[component].axes:
        by_value: dict[str, list[str]] = {}
        for fw, diag in diagnoses.items():
            by_value.setdefault(str(diag["conventions"].get(axis)), []).append(fw)
        definite = [v for v in by_value if v != "None" and not v.startswith("either")]
        if len(definite) > 1:
            causes.append(
                f"{axis}: " + "; ".join(f"{', '.join(fws)} {value}" for value, fws in by_value.items())
            )
    for fw, diag in diagnoses.items():
        if not diag["explained"]:
            causes.append(
                f"{fw} matches no reference (closest {diag['closest'] or 'the only form'}, "
                f"residual {diag['residual']:.2g})"
                if diag["residual"] is not None
                else f"{fw} output cannot be compared with the reference"
            )
    return causes


def assess(component: str, entries: dict[str, dict[str, Any]], seed: int, steps: int) -> dict[str, Any]:
    """One finding per component from every framework's child answer (`entries`, in order)."""
    comp, case = COMPONENTS[component], case_for(component, seed, steps)
    ok = [fw for fw, e in entries.items() if e.get("status") == "ok"]
    row: dict[str, Any] = {
        "component": component,
        "kind": comp.kind,
        "summary": comp.summary,
        "tolerance": tolerance(component),
        "frameworks": {
            fw: {"status": e.get("status", "failed"), "error": e.get("error"), "notes": e.get("notes", [])}
            for fw, e in entries.items()
        },
        "declared": declared_rows(component, entries),
        "axes": {k: list(v) for k, v in comp.axes.items()},
    }
    for mode in ("native", "aligned"):
        found: dict[str, Any] = {"baseline": ok[0] if ok else None, "deviation": {}, "diagnosis": {}}
        for fw in ok:
            measured = entries[fw]["modes"][mode]
            dev, note = deviation(measured["outputs"], entries[ok[0]]["modes"][mode]["outputs"], case)
            found["deviation"][fw] = {"value": dev, "note": note}
            found["diagnosis"][fw] = diagnose(component, measured["outputs"], measured["effective"], case)
        values = [d["value"] for d in found["deviation"].values()]
        found["max"] = None if None in values else max(values, default=0.0)
        found["same"] = found["max"] is not None and found["max"] <= tolerance(component) and len(ok) > 1
        found["causes"] = [] if found["same"] else _cause(component, found["diagnosis"])
        row[mode] = found
    differing = [r["neutral"] for r in row["declared"] if r["differs"]]
    if differing and not row["native"]["same"]:
        row["native"]["causes"].insert(0, f"declared defaults differ: {', '.join(differing)}")
    row["verdict"] = (
        "too few frameworks ran"
        if len(ok) < 2
        else "same"
        if row["native"]["same"]
        else "defaults differ; aligned: same"
        if row["aligned"]["same"]
        else "differs even when aligned"
    )
    return row


def assess_init(component: str, entries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per parameter: each framework's sampled statistics and the initialiser they identify."""
    rows = []
    for param in COMPONENTS[component].init:
        row: dict[str, Any] = {"component": component, "param": param, "frameworks": {}}
        for fw, entry in entries.items():
            stats = (entry.get("init") or {}).get(param)
            row["frameworks"][fw] = (
                None if stats is None else {**stats, "identified": initcheck.identify(stats, component)}
            )
        rows.append(row)
    return rows
