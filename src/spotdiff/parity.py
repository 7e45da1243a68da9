"""Parity: do the cells of one task compute the same numbers? One neutral helper for every task.

Each task's `parity()` names what to compare (`Check`s with their tolerances) and how to read the
arrays from a cell; `compare` does the rest, pairwise over the ok cells and for any number of
frameworks: a NaN or inf anywhere is a FAIL naming the cell, arrays of different shapes are a FAIL
(never cut to a common prefix), values must agree within `atol + rtol * scale` like
`numpy.allclose`, and fewer than two comparable cells give "not compared" (passed None), never PASS.
No framework is imported here.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

PASS, FAIL, NOT_COMPARED = "PASS", "FAIL", "not compared"


@dataclass(frozen=True)
class Check:
    """One compared quantity and its tolerance: |a - b| <= atol + rtol * scale, element by element.

    `key` names an array a cell records, or a family of them (`grad` matches `grad:<parameter>`).
    `relative_to`: "element" scales rtol by |b| at each element (numpy.allclose); "magnitude" by the
    largest |value| of the pair's arrays (gradients: a tolerance that grows with the gradient's size).
    """

    key: str
    label: str
    atol: float
    rtol: float = 0.0
    relative_to: Literal["element", "magnitude"] = "element"

    def describe(self) -> str:
        parts = [f"atol {self.atol:g}"] if self.atol else []
        if self.rtol:
            of = " of max |value|" if self.relative_to == "magnitude" else ""
            parts.append(f"rtol {self.rtol:g}{of}")
        return " + ".join(parts) or "exact"

    def matches(self, name: str) -> bool:
        return name == self.key or name.startswith(self.key + ":")


Reader = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def cell_label(cell: dict[str, Any]) -> str:
    return f"{cell['framework']}-{cell['mode']}"


def _labels(cells: list[dict[str, Any]]) -> list[str]:
    """framework-mode, with the seed added where repeats would make two labels the same."""
    plain = [cell_label(c) for c in cells]
    return [f"{p}-s{c.get('seed')}" if plain.count(p) > 1 else p for p, c in zip(plain, cells)]


def _tolerance(check: Check, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if check.relative_to == "magnitude":
        scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
        return np.full(b.shape, check.atol + check.rtol * scale)
    return check.atol + check.rtol * np.abs(b)


def _finite_problem(values: np.ndarray) -> str | None:
    if np.isnan(values).any():
        return "NaN"
    if np.isinf(values).any():
        return "inf"
    return None


def _failure(kind: str, check: str, cells: list[str], reason: str) -> dict[str, Any]:
    """kind: non-finite (NaN/inf), shape (different lengths), missing (not recorded), tolerance."""
    return {"check": check, "cells": cells, "kind": kind, "reason": reason}


def compare(cells: list[dict[str, Any]], checks: list[Check], read: Reader) -> dict[str, Any]:
    """Compare every pair of ok cells on every check; return the verdict and its evidence.

    `cells`: every cell of the group, whatever its status (failed and skipped ones are listed as not
    compared). `read(cell)` returns the cell's arrays by name, or None when it recorded none (the
    cell is then not compared). Returns passed (True / False / None), verdict, summary, cells (how
    many were compared), compared, not_compared [{cell, status, reason}], failed_cells, checks (the
    worst deviation per check with its pair, tolerance and verdict) and failures (see `_failure`).
    """
    arrays: dict[str, dict[str, np.ndarray]] = {}
    not_compared, failures = [], []
    for label, cell in zip(_labels(cells), cells):
        status = cell.get("status")
        recorded = read(cell) if status == "ok" else None
        if recorded is None:
            reason = "recorded nothing to compare" if status == "ok" else (cell.get("error") or status or "")
            not_compared.append({"cell": label, "status": status, "reason": str(reason)[:200]})
            continue
        arrays[label] = {name: np.asarray(v, dtype=np.float64) for name, v in recorded.items()
                         if any(c.matches(name) for c in checks)}
        for check in checks:
            if not any(check.matches(n) for n in arrays[label]):
                failures.append(_failure("missing", check.label, [label], f"{label} recorded no {check.key}"))
        for name, values in arrays[label].items():
            problem = _finite_problem(values)
            if problem:
                failures.append(_failure("non-finite", name, [label], f"{problem} in {name} of {label}"))
    results = [_check_pairs(check, arrays, failures) for check in checks]
    passed: bool | None = False if failures else (True if len(arrays) >= 2 else None)
    verdict = PASS if passed else FAIL if passed is False else NOT_COMPARED
    return {
        "passed": passed, "verdict": verdict, "cells": len(arrays), "compared": list(arrays),
        "not_compared": not_compared, "failed_cells": sum(1 for c in cells if c.get("status") == "failed"),
        "checks": results, "failures": failures,
        "summary": _summary(verdict, results, failures, len(arrays), not_compared),
    }


def _check_pairs(check: Check, arrays: dict[str, dict[str, np.ndarray]], failures: list) -> dict[str, Any]:
    """Worst |a - b| of one check over every pair (finite, same-shaped arrays only)."""
    worst: dict[str, Any] = {"deviation": None, "ratio": None, "pair": None, "name": None, "tol": None}
    for (la, a), (lb, b) in itertools.combinations(arrays.items(), 2):
        names_a = {n for n in a if check.matches(n)}
        names_b = {n for n in b if check.matches(n)}
        if names_a and names_b and names_a != names_b:
            only = ", ".join(sorted(names_a ^ names_b)[:4])
            reason = f"only one of {la}, {lb} recorded {only}"
            failures.append(_failure("missing", check.label, [la, lb], reason))
        for name in sorted(names_a & names_b):
            va, vb = a[name], b[name]
            if va.shape != vb.shape:
                failures.append(_failure("shape", name, [la, lb],
                                         f"{name}: {la} has shape {va.shape}, {lb} has {vb.shape}"))
                continue
            if _finite_problem(va) or _finite_problem(vb) or not va.size:
                continue
            deviation, tol = np.abs(va - vb), _tolerance(check, va, vb)
            ratios = deviation / np.maximum(tol, np.finfo(np.float64).tiny)
            at = int(np.argmax(ratios))
            ratio, dev_at, tol_at = float(ratios.flat[at]), float(deviation.flat[at]), float(tol.flat[at])
            if worst["ratio"] is None or ratio > worst["ratio"]:
                worst = {"deviation": dev_at, "ratio": ratio, "pair": [la, lb], "name": name, "tol": tol_at}
            if ratio > 1:
                failures.append(_failure("tolerance", name, [la, lb], (
                    f"{name}: {la} vs {lb} differ by {dev_at:.2e} > tol {tol_at:.2e} ({check.describe()})")))
    passed = None if worst["ratio"] is None else worst["ratio"] <= 1
    return {**asdict(check), **worst, "tolerance": check.describe(), "passed": passed}


def _summary(verdict: str, checks: list[dict], failures: list[dict], compared: int,
             not_compared: list[dict]) -> str:
    if failures:
        more = f" (+{len(failures) - 3} more)" if len(failures) > 3 else ""
        text = "; ".join(f["reason"] for f in failures[:3]) + more
    elif verdict == NOT_COMPARED:
        text = f"fewer than two cells to compare ({compared})"
    else:
        text = ", ".join(f"max |Δ{c['label']}| = {c['deviation']:.1e} ({' vs '.join(c['pair'])}; "
                         f"{c['tolerance']})" for c in checks if c["pair"]) + f"; {compared} cells"
    if not_compared:
        text += "; not compared: " + ", ".join(f"{n['cell']} ({n['status']})" for n in not_compared)
    return text


def legacy_keys(report: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """`max_<name>_dev`, `<name>_pair` and `<name>_tol` per check label, the keys results.json
    carried before the helper (kept so that older readers still find them)."""
    out = {}
    by_label = {c["label"]: c for c in report["checks"]}
    for label, name in names.items():
        check = by_label.get(label)
        if check is not None:
            out[f"max_{name}_dev"] = check["deviation"]
            out[f"{name}_pair"] = check["pair"]
            out[f"{name}_tol"] = check["atol"]
    return out


def npz_reader(artifact: str, metrics: dict[str, str] | None = None) -> Reader:
    """Reads the arrays of the npz file a cell saved as `artifacts[artifact]`, plus `metrics`
    (array name -> metric name) for names the file lacks or when there is no file; None if empty."""
    def read(cell: dict[str, Any]) -> dict[str, Any] | None:
        arrays: dict[str, Any] = {}
        path = (cell.get("artifacts") or {}).get(artifact)
        if path and Path(path).exists():
            with np.load(path) as probe:
                arrays = {name: probe[name] for name in probe.files}
        for name, metric in (metrics or {}).items():
            value = (cell.get("metrics") or {}).get(metric, "absent")
            if name not in arrays and value != "absent":
                arrays[name] = [np.nan if value is None else value]
        return arrays or None

    return read


def save_probe(cell_dir: Path, loss: float, grads: dict[str, Any], params_after: dict[str, Any]) -> str:
    """Write a one-step parity probe as `parity_probe.npz` (arrays `loss`, `grad:<name>` and
    `param:<name>`, in the task's neutral layout) and return its file name (a cell artifact)."""
    path = Path(cell_dir) / "parity_probe.npz"
    np.savez(path, loss=np.asarray([loss], np.float64),
             **{f"grad:{k}": np.asarray(v) for k, v in grads.items()},
             **{f"param:{k}": np.asarray(v) for k, v in params_after.items()})
    return path.name
