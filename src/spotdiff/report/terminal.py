"""Rich tables for the terminal: the results of a run, the parity verdict, the history."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from spotdiff.errors import UserError
from spotdiff.tasks import get_spec


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 1:
            return f"{value:.3g}" if magnitude < 100 else f"{value:.0f}"
        return f"{value:.3g}"
    return str(value)


def _headline(task: str) -> tuple[tuple[str, str, str, bool], ...]:
    try:
        return get_spec(task).headline_metrics
    except UserError:
        return ()


def results_tables(results: dict[str, Any]) -> list[Table]:
    """One table per task: a row per cell with its status and the task's headline metrics."""
    tables = []
    for task in dict.fromkeys(c["task"] for c in results["cells"]):
        headline = _headline(task)
        table = Table(title=f"{task}", title_justify="left")
        for name in ("framework", "mode", "variant", "status"):
            table.add_column(name)
        for _, label, _, _ in headline:
            table.add_column(label, justify="right")
        for cell in (c for c in results["cells"] if c["task"] == task):
            style = {"ok": "green", "failed": "red", "skipped": "yellow"}[cell["status"]]
            row = [cell["framework"], cell["mode"], cell["variant"], f"[{style}]{cell['status']}[/]"]
            if cell["status"] == "ok":
                row += [fmt(cell["metrics"].get(key)) for key, *_ in headline]
            else:
                row += [(cell.get("error") or "")[:80]] + [""] * (len(headline) - 1)
            table.add_row(*row)
        tables.append(table)
    return tables


def parity_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for task, by_variant in (results.get("parity") or {}).items():
        for variant, p in by_variant.items():
            passed = p.get("passed")
            label = p.get("verdict") or ("not compared" if passed is None else "PASS" if passed else "FAIL")
            verdict = f"[dim]{label}[/]" if passed is None else "[green]PASS[/]" if passed else "[red]FAIL[/]"
            failed = p.get("failed_cells") or 0
            note = f" [red]({failed} failed cell{'s' if failed > 1 else ''})[/]" if failed else ""
            lines.append(f"parity {task}/{variant}: {verdict}{note} {p.get('summary', '')}")
    return lines


def history_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(title="spotdiff history", title_justify="left")
    for name in ("run", "started", "status", "tasks", "frameworks", "ok", "failed", "skipped", "path"):
        table.add_column(name, justify="right" if name in ("ok", "failed", "skipped") else "left")
    for run in runs:
        table.add_row(
            run["run_id"], run["started_at"] or "", run["status"] or "", run["tasks"] or "",
            run["frameworks"] or "", str(run["cells_ok"]), str(run["cells_failed"]),
            str(run["cells_skipped"]), run["path"],
        )
    return table
