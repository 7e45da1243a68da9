"""`spotdiff export` and `spotdiff serve`; `register(app)` adds the verbs."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def export(
    run_dir: Path = typer.Argument(..., help="a run directory with trained digits cells"),
    formats: str | None = typer.Option(
        None, "--formats", help="comma list of pt2,onnx,savedmodel,tflite,jax (default: all)"
    ),
    out: Path | None = typer.Option(None, "--out", help="model root (default RUN_DIR/models)"),
    version: int = typer.Option(1, "--version", help="version folder to write (default 1)"),
) -> None:
    """Export the trained digit models (one child process per framework) and check parity on the test set."""
    from spotdiff.serve.export import ALL_FORMATS, run_export

    console = Console(width=None if sys.stdout.isatty() else 200)
    chosen = [f.strip() for f in formats.split(",") if f.strip()] if formats else list(ALL_FORMATS)
    root = out or run_dir / "models"
    with console.status("exporting in one child process per framework …"):
        result = run_export(run_dir, root, chosen, version)
    table = Table("model", "format", "size (KB)", "export (s)", "max |Δlogit|", "argmax", "parity")
    for row in result["artefacts"]:
        diff = row.get("max_abs_diff")
        table.add_row(
            row["name"],
            row["format"],
            f"{row['size_bytes'] / 1024:.0f}",
            f"{row['export_s']:.2f}",
            "-" if diff is None else f"{diff:.1e}",
            "-" if diff is None else ("same" if row["same_argmax"] else "DIFFERS"),
            {True: "ok", False: "FAIL", None: "unchecked"}[row.get("parity_ok")],
        )
    console.print(table)
    for failure in result["failures"]:
        console.print(
            f"{failure['framework']}: export failed: {failure['error']}", highlight=False, markup=False
        )
    console.print(f"results: {root / 'export.json'}", highlight=False)


def serve(
    model_root: Path = typer.Argument(..., help="a model root written by `spotdiff export`"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (default 127.0.0.1)"),
    rest_port: int = typer.Option(8501, "--rest-port", help="REST port (default 8501)"),
) -> None:
    """Serve exported models over the TensorFlow Serving REST API and KServe v2 REST."""
    import uvicorn

    from spotdiff.serve.app import build_app

    uvicorn.run(build_app(model_root), host=host, port=rest_port, log_level="warning")


def register(app: typer.Typer) -> None:
    """Add the `export` and `serve` verbs to the spotdiff app."""
    app.command("export")(export)
    app.command("serve")(serve)
