"""`spotdiff compare` in the terminal: versions that changed first, then the verdict counts, what
else differs, and a table of the metrics judged changed (every metric with `show_all`)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from spotdiff.compare import IMPROVED, NOT_JUDGED, UNCHANGED, WORSE, Comparison
from spotdiff.report.compare import compare_context

STYLES = {WORSE: "bold red", IMPROVED: "bold green", UNCHANGED: "", NOT_JUDGED: "dim"}


def _version(value: Any) -> str:
    return "not installed" if value is None else str(value)


def compare_renderables(comparison: Comparison, show_all: bool = False) -> list[Any]:
    """What `spotdiff compare` prints, in order: rich Text lines and one Table."""
    out: list[Any] = []
    if comparison.versions:
        changes = ", ".join(f"{c.name} {_version(c.a)} → {_version(c.b)}" for c in comparison.versions)
        out.append(Text(f"versions changed: {changes}", style="bold yellow"))
    counts = Text("metrics: ")
    for rank, (verdict, count) in enumerate(comparison.counts().items()):
        counts.append(", " if rank else "")
        counts.append(f"{count} {verdict}", style=STYLES.get(verdict, "yellow") if count else "")
    counts.append(f"  (threshold {comparison.threshold:g}x, spreads must not overlap)", style="dim")
    out.append(counts)
    for change in comparison.environment:
        out.append(Text(f"environment: {change.name} {change.a} → {change.b}"))
    for change in comparison.status:
        out.append(Text(f"cell {change.name}: {change.a} → {change.b} ({change.verdict})",
                        style=STYLES.get(change.verdict, "yellow")))
    for change in comparison.parity:
        out.append(Text(f"parity {change.name}: {change.a} → {change.b} ({change.verdict})",
                        style=STYLES.get(change.verdict, "yellow")))
    out += [Text(f"only in A: {key}") for key in comparison.only_in_a]
    out += [Text(f"only in B: {key}") for key in comparison.only_in_b]
    rows = compare_context(comparison, "", "")["rows"]
    shown = rows if show_all else [r for r in rows if r["verdict"] not in (UNCHANGED, NOT_JUDGED)]
    if shown:
        out.append(metrics_table(shown))
    elif rows:
        out.append(Text("no metric changed beyond noise" + ("" if show_all else " (--all lists every one)")))
    return out


def metrics_table(rows: list[dict[str, str]]) -> Table:
    table = Table(title="metrics, B against A", title_justify="left")
    for name in ("cell", "metric", "A", "B", "B/A", "verdict", "why"):
        table.add_column(name, justify="right" if name in ("A", "B", "B/A") else "left")
    for row in rows:
        table.add_row(row["cell"], row["metric"], row["a"], row["b"], row["ratio"],
                      Text(row["verdict"], style=STYLES.get(row["verdict"], "yellow")), row["reason"])
    return table
