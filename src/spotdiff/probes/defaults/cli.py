"""`spotdiff defaults`: the defaults audit on the command line; `register(app)` adds the verb."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console


def defaults(
    components: list[str] = typer.Argument(
        None,
        metavar="[COMPONENT]...",
        help="components or groups (optimizers, layers, losses); default: all",
    ),
    frameworks: Optional[str] = typer.Option(
        None, "--frameworks", "-f", help="comma list (default: all installed)"
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="output directory (default runs/defaults-<timestamp>)"
    ),
    seed: int = typer.Option(0, "--seed", help="seed for gradients, weights and inputs (default 0)"),
    steps: int = typer.Option(100, "--steps", help="optimiser steps per gradient stream (default 100)"),
    timeout: float = typer.Option(
        600.0, "--timeout", help="seconds for the framework children (default 600)"
    ),
) -> None:
    """Compare equivalent optimisers, layers and losses across frameworks: declared defaults
    (introspected), behaviour with native and aligned settings, and the measured cause of what differs."""
    from spotdiff.probes.defaults.audit import run_audit
    from spotdiff.probes.defaults.render import framework_lines, tables

    console = Console(width=None if sys.stdout.isatty() else 200)
    chosen = [f.strip() for f in frameworks.split(",") if f.strip()] if frameworks else None
    with console.status("probing defaults in one child process per framework …"):
        results, out_dir = run_audit(
            components or None, chosen, seed=seed, steps=steps, out_dir=out, timeout_s=timeout
        )
    for line in framework_lines(results):
        console.print(line, highlight=False, markup=False)
    for table in tables(results):
        console.print(table)
    console.print(f"results: {out_dir / 'defaults.json'}", highlight=False)
    console.print(f"html:    {out_dir / 'defaults.html'}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the `defaults` verb to the spotdiff app."""
    app.command("defaults")(defaults)
