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
        None,
        "--formats",
        help="comma list of pt2,aoti,onnx,savedmodel,tflite,tf2onnx,jax,jax2tf (default: all)",
    ),
    out: Path | None = typer.Option(None, "--out", help="model root (default RUN_DIR/models)"),
    version: int = typer.Option(1, "--version", help="version folder to write (default 1)"),
    force: bool = typer.Option(False, "--force", help="replace model versions that exist (default: refuse)"),
) -> None:
    """Export the trained digit models (one child process per framework) and check parity on the test set."""
    from spotdiff.serve.export import ALL_FORMATS, run_export

    console = Console(width=None if sys.stdout.isatty() else 200)
    chosen = [f.strip() for f in formats.split(",") if f.strip()] if formats else list(ALL_FORMATS)
    root = out or run_dir / "models"
    with console.status("exporting in one child process per framework …"):
        result = run_export(run_dir, root, chosen, version, force=force)
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
    model_root: Path = typer.Argument(
        ..., help="a model root (spotdiff export) or a run directory with models/"
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (default 127.0.0.1)"),
    rest_port: int = typer.Option(8501, "--rest-port", help="REST port (default 8501)"),
    grpc_port: int = typer.Option(8500, "--grpc-port", help="gRPC port (default 8500; 0 turns gRPC off)"),
) -> None:
    """Serve exported models over TF Serving and KServe v2, REST and gRPC, from one child process."""
    import signal

    from spotdiff import children
    from spotdiff.serve.roots import model_root as servable_root

    root = servable_root(model_root)  # a missing or empty folder: one line, exit 2, nothing listens
    # The models load in a child: the frameworks are imported there, never in this CLI process. It
    # shares our process group, so a terminal's Ctrl-C reaches it as it reaches us.
    server = children.start(
        "spotdiff.serve.server", [str(root), host, rest_port, grpc_port], own_session=False
    )

    def stop(signum, frame) -> None:  # Ctrl-C or `kill`: the server shuts down, then this process ends
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = server.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        children.kill(server)  # reaps it, and anything it left behind
    if code:  # the child printed its one line already (e.g. a busy gRPC port is exit 2)
        raise typer.Exit(code if code > 0 else 128 - code)


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

    def split(text: str | None) -> list[str] | None:
        return [x.strip() for x in text.split(",") if x.strip()] if text else None

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
