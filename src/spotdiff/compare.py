"""Two runs side by side: what got better or worse beyond noise, and what else differs.

`compare_runs(results_a, results_b, threshold)` takes two results.json dicts (A the baseline, B the
new run) and lines up their cells by task/framework/mode/variant. Every metric is judged as
`asv compare` judges a benchmark: a change only when the two spreads (`X_min`..`X_max`, or the range
over several seeds) do not overlap AND the ratio B/A passes the threshold; the direction comes from
the task spec's `headline_metrics` (lower_is_better). A value that is missing, NaN or has no spread
is shown but never judged. Besides the metrics: framework versions and environment that differ,
cells in one run only, cells whose status changed and parity verdicts that changed.

Pure functions over dicts: no file, no terminal and no framework import.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from spotdiff.errors import UserError

WORSE, IMPROVED, CHANGED, UNCHANGED, NOT_JUDGED = "worse", "improved", "changed", "unchanged", "not judged"
VERDICTS = (WORSE, IMPROVED, CHANGED, UNCHANGED, NOT_JUDGED)
DEFAULT_THRESHOLD = 1.1
# Measured by the runner in every task: key -> (label, unit, lower_is_better)
RUNTIME_METRICS: dict[str, tuple[str, str, bool | None]] = {
    "steady_step_us": ("steady µs/step", "µs", True),
    "first_step_s": ("first step (s)", "s", True),
    "compile_s": ("compile (s)", "s", True),
    "import_s": ("import (s)", "s", True),
    "peak_rss_mb": ("peak RSS (MB)", "MB", True),
    "steps_per_s": ("steps/s", "", False),
    "train_s": ("train (s)", "s", True),
}
# Environment entries that differ between any two runs: when it ran, a rate it measured.
VOLATILE_ENVIRONMENT = {"started_at", "finished_at", "matmul_peak_gflops"}


@dataclass(frozen=True)
class Measured:
    """One metric of one cell (median over its seeds) and its spread, when one was measured."""

    value: float | None
    low: float | None = None
    high: float | None = None

    @property
    def has_spread(self) -> bool:
        return self.low is not None and self.high is not None and self.low < self.high


@dataclass
class MetricRow:
    cell: str  # task/framework/mode/variant
    metric: str
    label: str
    unit: str
    lower_is_better: bool | None
    a: float | None
    a_min: float | None
    a_max: float | None
    b: float | None
    b_min: float | None
    b_max: float | None
    ratio: float | None  # B / A
    verdict: str
    reason: str


@dataclass
class Difference:
    """A version, environment entry, cell status or parity verdict that is not the same in A and B."""

    name: str
    a: Any
    b: Any
    verdict: str = CHANGED


@dataclass
class Comparison:
    run_a: str
    run_b: str
    threshold: float
    versions: list[Difference] = field(default_factory=list)
    environment: list[Difference] = field(default_factory=list)
    status: list[Difference] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    parity: list[Difference] = field(default_factory=list)
    metrics: list[MetricRow] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Metric rows per verdict, every verdict present (zeros included), worst first."""
        return {verdict: sum(row.verdict == verdict for row in self.metrics) for verdict in VERDICTS}

    def got_worse(self) -> bool:
        """Anything worse beyond noise: a metric, a cell that now fails, a parity check that now fails."""
        return any(item.verdict == WORSE for item in [*self.metrics, *self.status, *self.parity])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "counts": self.counts(), "got_worse": self.got_worse()}


def finite(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def cell_key(cell: dict[str, Any]) -> str:
    return "/".join(str(cell.get(part)) for part in ("task", "framework", "mode", "variant"))


def judge(a: Measured, b: Measured, lower_is_better: bool | None,
          threshold: float = DEFAULT_THRESHOLD) -> tuple[str, str, float | None]:
    """(verdict, reason, ratio B/A). A change needs disjoint spreads and a ratio beyond `threshold`."""
    if a.value is None or b.value is None:
        where = "A and B" if a.value is None and b.value is None else "A" if a.value is None else "B"
        return NOT_JUDGED, f"no value in {where}", None
    ratio = b.value / a.value if a.value > 0 and b.value > 0 else None
    if a.value == b.value:
        return UNCHANGED, "identical", 1.0
    if not (a.has_spread and b.has_spread):
        where = "A and B" if not (a.has_spread or b.has_spread) else "A" if not a.has_spread else "B"
        return NOT_JUDGED, f"no spread in {where}", ratio
    if a.high >= b.low and b.high >= a.low:  # type: ignore[operator]
        return UNCHANGED, "spreads overlap", ratio
    if ratio is None:
        return NOT_JUDGED, "no ratio of a zero or negative value", None
    if 1 / threshold <= ratio <= threshold:
        return UNCHANGED, f"within the {threshold:g}x threshold", ratio
    if lower_is_better is None:
        return CHANGED, "beyond noise; no better direction declared", ratio
    worse = (ratio > 1) == lower_is_better
    return (WORSE if worse else IMPROVED), "spreads disjoint, ratio beyond the threshold", ratio


def measured(cells: list[dict[str, Any]], key: str) -> Measured:
    """`key` over the ok cells of one group (one per seed): the median, and as spread the recorded
    `key_min`..`key_max` of every cell, or else the range of the values when there are several."""
    metrics = [c.get("metrics") or {} for c in cells if c.get("status") == "ok"]
    values = [v for v in (finite(m.get(key)) for m in metrics) if v is not None]
    if not values:
        return Measured(None)
    lows = [finite(m.get(f"{key}_min")) for m in metrics]
    highs = [finite(m.get(f"{key}_max")) for m in metrics]
    if None not in lows + highs:
        return Measured(statistics.median(values), min(lows + values), max(highs + values))  # type: ignore
    if len(values) > 1:
        return Measured(statistics.median(values), min(values), max(values))
    return Measured(values[0])


def metric_info(task: str) -> dict[str, tuple[str, str, bool | None]]:
    """key -> (label, unit, lower_is_better): the runner's metrics, then the task spec's headline."""
    from spotdiff.tasks import get_spec

    info = dict(RUNTIME_METRICS)
    try:
        spec = get_spec(task)
    except (UserError, ImportError, AttributeError):  # a task this version does not know
        return info
    for key, label, unit, lower_is_better in spec.headline_metrics:
        info[key] = (label, unit, lower_is_better)
    return info


def metric_keys(cells: list[dict[str, Any]], info: dict[str, Any]) -> list[str]:
    """Numeric metrics of these cells, the spec's headline order first; `X_min`/`X_max` are X's spread."""
    found: dict[str, None] = {}
    for cell in cells:
        for key, value in (cell.get("metrics") or {}).items():
            if value is None or finite(value) is not None or isinstance(value, float):
                found[key] = None
    keys = [k for k in found if not any(k == f"{base}{end}" for base in found for end in ("_min", "_max"))]
    known = [k for k in info if k in keys]
    return known + sorted(k for k in keys if k not in info)


def _groups(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for cell in results.get("cells") or []:
        groups.setdefault(cell_key(cell), []).append(cell)
    return groups


def _status(cells: list[dict[str, Any]]) -> str:
    statuses = {c.get("status") for c in cells}
    return next((s for s in ("failed", "skipped", "ok") if s in statuses), "unknown")


def _status_verdict(a: str, b: str) -> str:
    if b == "failed":
        return WORSE
    return IMPROVED if a == "failed" and b == "ok" else CHANGED


def metric_rows(key: str, cells_a: list[dict[str, Any]], cells_b: list[dict[str, Any]],
                threshold: float) -> list[MetricRow]:
    """Every metric of one cell present in both runs, judged; none unless it is ok in both."""
    info = metric_info(key.split("/")[0])
    ok_a, ok_b = ([c for c in cells if c.get("status") == "ok"] for cells in (cells_a, cells_b))
    if not (ok_a and ok_b):
        return []  # a cell that failed or was skipped on one side is a status change
    ok = ok_a + ok_b
    rows = []
    for metric in metric_keys(ok, info):
        a, b = measured(cells_a, metric), measured(cells_b, metric)
        label, unit, lower_is_better = info.get(metric, (metric, "", None))
        verdict, reason, ratio = judge(a, b, lower_is_better, threshold)
        rows.append(MetricRow(key, metric, label, unit, lower_is_better, a.value, a.low, a.high,
                              b.value, b.low, b.high, ratio, verdict, reason))
    return rows


def installed_versions(results: dict[str, Any]) -> dict[str, Any]:
    """Package -> version: the run's framework versions, then what each cell's child reported."""
    versions = dict((results.get("environment") or {}).get("frameworks") or {})
    for cell in results.get("cells") or []:
        for name, version in ((cell.get("environment") or {}).get("versions") or {}).items():
            versions.setdefault(name, version)
    return versions


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[Difference]:
    return [Difference(name, a.get(name), b.get(name)) for name in dict.fromkeys([*a, *b])
            if a.get(name) != b.get(name)]


def environment_differences(results_a: dict[str, Any], results_b: dict[str, Any]) -> list[Difference]:
    """Environment entries (threads, CPU, flags, ...) that differ; versions and timestamps left out."""
    def settings(results: dict[str, Any]) -> dict[str, Any]:
        env = {k: v for k, v in (results.get("environment") or {}).items()
               if k != "frameworks" and k not in VOLATILE_ENVIRONMENT}
        return _flatten(env)

    return _differences(settings(results_a), settings(results_b))


def parity_verdicts(results: dict[str, Any]) -> dict[str, str]:
    """task/variant -> pass, fail or not compared."""
    verdicts = {}
    for task, by_variant in (results.get("parity") or {}).items():
        for variant, parity in (by_variant or {}).items():
            if isinstance(parity, dict):
                passed = parity.get("passed")
                verdicts[f"{task}/{variant}"] = parity.get("verdict") or (
                    "not compared" if passed is None else "pass" if passed else "fail")
    return verdicts


def parity_differences(results_a: dict[str, Any], results_b: dict[str, Any]) -> list[Difference]:
    """Parity verdicts that changed: pass -> fail is worse, fail -> pass improved."""
    changes = _differences(parity_verdicts(results_a), parity_verdicts(results_b))
    for change in changes:
        change.verdict = (WORSE if (change.a, change.b) == ("pass", "fail") else
                          IMPROVED if (change.a, change.b) == ("fail", "pass") else CHANGED)
    return changes


def compare_runs(results_a: dict[str, Any], results_b: dict[str, Any],
                 threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    """Compare run B against baseline run A. UserError when the runs share no cell."""
    if not finite(threshold) or threshold < 1:
        raise UserError(f"--threshold must be a ratio of at least 1, e.g. 1.1; got {threshold}")
    groups_a, groups_b = _groups(results_a), _groups(results_b)
    common = [key for key in groups_a if key in groups_b]
    if not common:
        tasks_a = sorted({k.split("/")[0] for k in groups_a}) or ["none"]
        tasks_b = sorted({k.split("/")[0] for k in groups_b}) or ["none"]
        raise UserError(f"the runs have no cell in common (tasks in A: {', '.join(tasks_a)}; "
                        f"in B: {', '.join(tasks_b)}); compare runs of the same task")
    comparison = Comparison(
        run_a=str(results_a.get("run_id")), run_b=str(results_b.get("run_id")), threshold=threshold,
        versions=_differences(installed_versions(results_a), installed_versions(results_b)),
        environment=environment_differences(results_a, results_b),
        only_in_a=[key for key in groups_a if key not in groups_b],
        only_in_b=[key for key in groups_b if key not in groups_a],
        parity=parity_differences(results_a, results_b),
    )
    for key in common:
        status_a, status_b = _status(groups_a[key]), _status(groups_b[key])
        if status_a != status_b:
            comparison.status.append(Difference(key, status_a, status_b, _status_verdict(status_a, status_b)))
        comparison.metrics += metric_rows(key, groups_a[key], groups_b[key], threshold)
    return comparison
