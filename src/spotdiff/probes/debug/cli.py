"""The `spotdiff debug` verb, registered on the main Typer app by `register(app)`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.console import Console

from spotdiff.tasks import DEFAULT_TASK


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value is not None else None


def debug(
    task: str = typer.Argument(
        DEFAULT_TASK, help=f"task whose graph the graph probe dumps (default {DEFAULT_TASK})"),
    frameworks: str | None = typer.Option(None, "--frameworks", "-f", help="comma list (default: all)"),
    modes: str | None = typer.Option(None, "--modes", "-m", help="comma list (default: every debug mode)"),
    probes: str | None = typer.Option(
        None, "--probes", help="comma list of print, error, postmortem, nan, graph (default: all)"),
    steps: int = typer.Option(6, "--steps", help="steps of the print probe, at least 2 (default 6)"),
    timeout: float = typer.Option(
        120.0, "--timeout", help="seconds per probe before it counts as failed (default 120)"),
    out: Path | None = typer.Option(None, "--out", help="output folder (default runs/debug-<timestamp>)"),
) -> None:
    """Measure print, tracebacks, pdb, NaN tools and graph dumps in every framework and mode."""
    from spotdiff.errors import UserError
    from spotdiff.probes.debug import harness, output, schema

    pairs, chosen = schema.select(_split(frameworks), _split(modes), _split(probes))
    schema.check_task(task)
    if steps < 2:
        raise UserError(f"--steps must be at least 2 (the batch shape changes half way), got {steps}")
    if timeout <= 0:
        raise UserError(f"--timeout must be positive, got {timeout:g}")
    # Its own consoles, as the main app's (spotdiff.cli registers this verb: importing it back is a circle).
    console = Console(width=None if sys.stdout.isatty() else 160)
    err_console = Console(stderr=True, soft_wrap=True)
    out_dir = Path(out or Path("runs") / time.strftime("debug-%Y%m%d-%H%M%S"))
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = harness.Settings(task=task, steps=steps, probe_timeout_s=timeout)
    doc = {"schema": schema.SCHEMA, "task": task, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "settings": {"steps": steps, "probe_timeout_s": timeout, "probes": chosen},
           "versions": {}, "rows": []}

    def on_row(row: dict) -> None:
        doc["rows"].append(row)
        output.write_json(out_dir, doc)  # an interrupted run keeps what it measured

    status = console.status("")
    try:
        for position, (framework, mode) in enumerate(pairs, start=1):
            status.update(f"[{position}/{len(pairs)}] {framework} {mode} …")
            status.start()
            doc["versions"].update(harness.run_pair(framework, mode, chosen, settings, out_dir, on_row))
            status.stop()
    except KeyboardInterrupt:
        status.stop()
        err_console.print("interrupted: measured rows kept in debug.json")
        raise typer.Exit(130) from None
    finally:
        status.stop()
        output.write_json(out_dir, doc)
        output.write_html(out_dir, doc)
    console.print(output.terminal_table(doc))
    console.print(f"results: {out_dir / 'debug.json'}")
    console.print(f"report:  {out_dir / 'debug.html'}")


def register(app: typer.Typer) -> None:
    """Add the `debug` command to `app`."""
    app.command("debug")(debug)
