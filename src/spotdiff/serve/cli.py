"""`spotdiff export`, `spotdiff serve` and `spotdiff loadtest`; `register(app)` adds the verbs."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def export(
    run_dir: Path = typer.Argument(..., help="a run directory with trained digits cells"),
    formats: str | None = typer.Option(
        None, "--formats", help="comma list of pt2,onnx,savedmodel,tflite,tf2onnx,jax,jax2tf (default: all)"
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
    grpc_port: int = typer.Option(8500, "--grpc-port", help="gRPC port (default 8500; 0 turns gRPC off)"),
) -> None:
    """Serve exported models over TensorFlow Serving REST + gRPC and KServe v2 REST + gRPC, in one process."""
    import gc
    import os

    # keep the console for errors: TensorFlow's info lines and grpc core's log of a failed bind
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    import uvicorn

    from spotdiff.errors import UserError
    from spotdiff.serve.app import build_app
    from spotdiff.serve.models import load_models

    if not model_root.is_dir():
        raise UserError(f"no model root at {model_root}; write one with `spotdiff export RUN_DIR`")
    models: dict = {}  # one registry: REST and gRPC share the models and their locks
    grpc_server = None
    if grpc_port:
        from spotdiff.serve.grpc_server import build_grpc_server

        grpc_server = build_grpc_server(models, host, grpc_port)  # binds now: a busy port fails fast
    models.update(load_models(model_root))
    # The frameworks leave millions of long-lived objects; freezing them keeps the collector's full
    # passes, triggered by each request's JSON lists, from walking them (they cost ~0.5 s p99 stalls).
    gc.collect()
    gc.freeze()
    if grpc_server is not None:
        grpc_server.start()
    try:
        uvicorn.run(build_app(model_root, models), host=host, port=rest_port, log_level="warning")
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=1).wait()


def loadtest(
    target: Path = typer.Argument(..., help="a model root (spotdiff export) or a run directory with models/"),
    requests: int = typer.Option(500, "--requests", help="request budget per measurement (default 500)"),
    duration: float = typer.Option(5.0, "--duration", help="seconds per measurement, at most (default 5)"),
    concurrency: str = typer.Option("1,4,16", "--concurrency", help="closed-loop clients (default 1,4,16)"),
    protocols: str | None = typer.Option(
        None,
        "--protocols",
        help="comma list (default all: rest-tfserving,rest-kserve,grpc-tfserving,grpc-kserve,flask)",
    ),
    models: str | None = typer.Option(None, "--models", help="comma list of model names (default all)"),
    out: Path | None = typer.Option(
        None, "--out", help="output folder (default <run dir or model root>/loadtest)"
    ),
) -> None:
    """Closed-loop load on 127.0.0.1 against spotdiff serve (REST + gRPC) and a Flask baseline."""
    from spotdiff.errors import UserError
    from spotdiff.serve.loadgen import PROTOCOLS
    from spotdiff.serve.loadtest import run_loadtest

    try:
        levels = tuple(int(c) for c in concurrency.split(",") if c.strip())
    except ValueError:
        raise UserError(
            f"--concurrency {concurrency!r}: give comma-separated integers, e.g. 1,4,16"
        ) from None
    split = lambda text: [x.strip() for x in text.split(",") if x.strip()] if text else None
    console = Console(width=None if sys.stdout.isatty() else 200)
    with console.status("load testing (servers and load generator run as child processes) …"):
        results, folder = run_loadtest(
            target, out, requests, duration, levels, tuple(split(protocols) or PROTOCOLS), split(models)
        )
    from spotdiff.report.serving import serving_table

    console.print(serving_table(results))
    console.print(f"results: {folder / 'results.json'}  report: {folder / 'report.html'}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the `export` and `serve` verbs to the spotdiff app."""
    app.command("export")(export)
    app.command("serve")(serve)
    app.command("loadtest")(loadtest)
