"""What the bench scripts share: one spotdiff cell per process, interleaved pairs, the figures'
format (median with min–max; ratios of medians with the min–max of the pairwise ratios), the
machine line and the BENCHMARKS.md section writer."""

from __future__ import annotations

import platform
import statistics
from pathlib import Path
from typing import Any

from spotdiff.experiment import build_experiment
from spotdiff.orchestrate import run_experiment


def spotdiff_cell(
    task: str,
    framework: str,
    mode: str,
    threads: int,
    out: Path,
    *,
    variant: str | None = None,
    overrides: dict[str, Any] | None = None,
    repeats: int | None = None,
) -> dict[str, Any]:
    """Run one cell (its own child process, pinned by spotdiff.children) and return its metrics."""
    config: dict[str, Any] = {
        "tasks": [task],
        "frameworks": [framework],
        "modes": [mode],
        "threads": threads,
        "device": "cpu",
        "overrides": overrides or {},
    }
    if variant:
        config["variants"] = [variant]
    if repeats:
        config["repeats"] = repeats
    results, _ = run_experiment(build_experiment(config), out, index=False, render=False, overwrite=True)
    (cell,) = results["cells"]
    if cell["status"] != "ok":
        raise RuntimeError(f"{task} {framework}-{mode} {variant or ''}: {cell['error']}")
    return cell["metrics"]


def spread(values: list[float], fmt: str = ",.0f") -> str:
    """'median (min–max)'."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


def ratio(a: list[float], b: list[float]) -> str:
    """median(a) / median(b), with the min–max of a_i / b_i over the interleaved pairs."""
    pairs = [x / y for x, y in zip(a, b)]
    return f"{statistics.median(a) / statistics.median(b):.2f} ({min(pairs):.2f}–{max(pairs):.2f})"


def machine(threads: int, repeats: int, what: str) -> str:
    from spotdiff.record.environment import collect

    env = collect(threads, "cpu")
    versions = ", ".join(f"{k} {v}" for k, v in env["frameworks"].items() if v)
    return (
        f"Machine: {env['cpu_model']}, {env['cpu_cores']} cores, threads {threads}; Python "
        f"{platform.python_version()}; {versions}. {what}: {repeats} interleaved pairs "
        "(A, B, A, B, ...); median (min–max); ratios are ratios of medians (min–max of the pairwise ratios)."
    )


def write_section(path: Path, name: str, text: str, heading: str) -> None:
    """Replace the `<!-- NAME:begin/end -->` section of `path` (appended under `heading` if absent)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin not in doc:
        doc += f"\n{heading}\n\n{begin}\n{end}\n"
    head, _, rest = doc.partition(begin)
    _, _, tail = rest.partition(end)
    path.write_text(f"{head}{begin}\n{text}\n{end}{tail}")
