"""The `spotdiff` command: a thin layer over the library, one function per verb.

Bad input never shows a traceback: it prints one line `spotdiff: error: ...` and exits with 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from spotdiff import frameworks as fw
from spotdiff.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Run one experiment in PyTorch, TensorFlow and JAX side by side and see where they differ.",
)
console = Console(width=None if sys.stdout.isatty() else 160)  # pipes and CI logs get wide tables
err_console = Console(stderr=True, soft_wrap=True)


def _split(value: Optional[str]) -> Optional[list[str]]:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items


@app.command()
def run(
    tasks: list[str] = typer.Argument(None, metavar="[TASK]...", help="tasks to run (default: all)"),
    frameworks: Optional[str] = typer.Option(None, "--frameworks", "-f", help="comma list (default: all installed)"),
    modes: Optional[str] = typer.Option(None, "--modes", "-m", help="comma list (default: every mode)"),
    variant: Optional[str] = typer.Option(None, "--variant", help="manual | optimizer (default: both)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="training steps (task default: 2000)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seed for data and init (default 0)"),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="timed repeats per cell (default 3)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="threads/cores per cell (default: all cores)"),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | gpu (default auto)"),
    cell_timeout: Optional[float] = typer.Option(None, "--cell-timeout", help="seconds per cell (default 900)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="data-parallel workers per cell, one core each (default 1; digits only)"),
    set_: list[str] = typer.Option(None, "--set", help="task option key=value (repeatable)"),
    init: Optional[str] = typer.Option(None, "--init", help="shared | native weights for tasks with models (default shared)"),
    hparams: Optional[str] = typer.Option(None, "--hparams", help="aligned | native: pass every optimiser setting, or leave unset ones to each framework's defaults (default aligned)"),
    config: Optional[Path] = typer.Option(None, "--config", help="experiment TOML file"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory (default runs/<timestamp>)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a run in --out (default: refuse)"),
    task_module: list[Path] = typer.Option(None, "--task-module", help="your own task: a spec.py or its folder (repeatable)"),
    executor: Optional[str] = typer.Option(None, "--executor", help="local | ray: where cells run (default local)"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster HOST:PORT for --executor ray (default: start a local Ray)"),
) -> None:
    """Run the comparison: every task x framework x mode x variant, one child process per cell."""
    from spotdiff.experiment import build_experiment, expand, load_toml, parse_set
    from spotdiff.orchestrate import run_experiment
    from spotdiff.report.terminal import parity_lines, results_tables

    settings: dict[str, Any] = load_toml(config) if config else {}
    out = out or (Path(settings.pop("out")) if "out" in settings else None)
    settings.pop("out", None)
    overwrite = overwrite or settings.pop("overwrite", False)
    overrides = dict(settings.get("overrides", {}))
    overrides.update(parse_set(set_ or []))
    if steps is not None:
        overrides["steps"] = steps
    if init is not None:
        overrides["init"] = init
    overrides.update({"hparams": hparams} if hparams is not None else {})
    if device is not None and device not in ("auto", "cpu", "gpu"):
        raise UserError(f"unknown device {device!r}; choose from: auto, cpu, gpu")
    if executor is not None and executor not in ("local", "ray"):
        raise UserError(f"unknown executor {executor!r}; choose from: local, ray")
    if task_module:
        settings["task_modules"] = [*settings.get("task_modules", []), *map(str, task_module)]
    flags = {
        "tasks": tasks or None, "frameworks": _split(frameworks), "modes": _split(modes),
        "variants": [variant] if variant else None, "seed": seed, "repeats": repeats,
        "threads": threads, "device": device, "cell_timeout_s": cell_timeout,
        "workers": workers,
        "executor": executor, "address": address,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    settings["overrides"] = overrides
    exp = build_experiment(settings)
    cells = expand(exp)
    total = len(cells)
    position = {"n": 0}
    status_line = console.status("")

    def on_start(cell) -> None:
        position["n"] += 1
        status_line.update(f"[{position['n']}/{total}] {cell.task} {cell.framework} {cell.mode} {cell.variant} …")
        status_line.start()

    def on_done(outcome) -> None:
        status_line.stop()
        c, m = outcome.cell, outcome.metrics
        mark = {"ok": "[green]ok[/]", "failed": "[red]failed[/]", "skipped": "[yellow]skipped[/]"}[outcome.status]
        detail = (
            f"steady {m.get('steady_step_us', 0):.1f} µs/step, first step {m.get('first_step_s', 0):.3f} s"
            if outcome.status == "ok" and "steady_step_us" in m else (outcome.error or "")
        )
        console.print(
            f"[{position['n']}/{total}] {c.task} {c.framework}-{c.mode} {c.variant}: {mark} "
            f"({outcome.wall_s:.1f} s) {detail}", highlight=False,
        )

    warnings: list[str] = []  # printed last, after the tables, where they are seen
    try:
        results, run_dir = run_experiment(exp, out, on_start=on_start, on_done=on_done,
                                          overwrite=overwrite, on_warning=warnings.append)
    except KeyboardInterrupt:
        status_line.stop()
        err_console.print("interrupted: finished cells kept in results.json, report written")
        raise typer.Exit(130)
    for table in results_tables(results):
        console.print(table)
    for line in parity_lines(results):
        console.print(line, highlight=False)
    console.print(f"results: {run_dir / 'results.json'}")
    console.print(f"report:  {run_dir / 'report.html'}")
    for warning in warnings:
        err_console.print(f"spotdiff: warning: {warning}", highlight=False, markup=False)


@app.command("list")
def list_(
    task_module: list[Path] = typer.Option(None, "--task-module", help="also list this task (spec.py or folder)"),
) -> None:
    """Tasks, their modes and variants, and the installed frameworks with versions."""
    from rich.table import Table

    from spotdiff.tasks import get_spec, has_impl, register_task_file, task_names

    for path in task_module or []:
        register_task_file(path)

    table = Table(title="frameworks", title_justify="left")
    table.add_column("framework")
    table.add_column("version")
    for name, framework in fw.FRAMEWORKS.items():
        version = fw.installed_version(name)
        table.add_row(f"{name} ({framework.label})", version or "[yellow]not installed[/]")
    console.print(table)
    for task in task_names():
        spec = get_spec(task)
        modes = Table(title=f"task {task}: {spec.summary}; variants: {', '.join(spec.variants)}", title_justify="left")
        modes.add_column("framework")
        modes.add_column("mode")
        modes.add_column("what it runs")
        for framework, names in spec.modes.items():
            known = framework in fw.FRAMEWORKS
            present = known and has_impl(task, fw.FRAMEWORKS[framework].impl_prefix)
            for mode in names:
                note = "" if present else " [yellow](no implementation: cells are skipped)[/]"
                modes.add_row(framework, mode, spec.mode_help.get((framework, mode), "") + note)
        console.print(modes)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a run directory with results.json")) -> None:
    """Re-render report.html (and the PNG plots) from RUN_DIR/results.json."""
    from spotdiff.record import results as results_file

    results = results_file.load(run_dir)
    from spotdiff.report.html import render_report
    from spotdiff.report.terminal import parity_lines, results_tables

    path = render_report(results, run_dir)
    for table in results_tables(results):
        console.print(table)
    for line in parity_lines(results):
        console.print(line, highlight=False)
    console.print(f"report:  {path}")


@app.command()
def history(limit: int = typer.Option(20, "--limit", help="how many runs to show (default 20)")) -> None:
    """Past runs from the SQLite store (SPOTDIFF_HOME, default ~/.spotdiff)."""
    from spotdiff.record import store
    from spotdiff.report.terminal import history_table

    runs = store.list_runs(limit)
    if not runs:
        console.print(f"no runs recorded yet in {store.db_path()}")
        return
    console.print(history_table(runs))


from spotdiff.probes.debug.cli import register as _register_debug
_register_debug(app)
from spotdiff.probes.defaults.cli import register as _register_defaults
_register_defaults(app)
from spotdiff.locate.cli import register as _register_where
_register_where(app)


@app.command()
def board(
    run_dir: Optional[Path] = typer.Argument(None, help="a run directory (default: the latest run)"),
    port: Optional[int] = typer.Option(None, "--port", help="port on 127.0.0.1 (default: a free one)"),
) -> None:
    """Start TensorBoard on 127.0.0.1 for RUN_DIR/tensorboard, print its URL, serve until Ctrl-C."""
    import signal
    import tempfile

    from spotdiff import children
    from spotdiff.record import board as tensorboard_board

    tensorboard_board.require_tensorboard()
    log_dir = tensorboard_board.board_log_dir(run_dir)
    port = tensorboard_board.check_port(port) if port is not None else children.free_ports(1)[0]
    url = f"http://127.0.0.1:{port}/"

    def stop(signum: int, frame: Any) -> None:  # `kill` stops the server too, as Ctrl-C does
        raise KeyboardInterrupt

    err_console.print(f"starting TensorBoard for {log_dir} …", highlight=False)
    with tempfile.TemporaryFile() as server_log:
        server = tensorboard_board.start_tensorboard(log_dir, port, stdout=server_log, stderr=server_log)
        signal.signal(signal.SIGTERM, stop)
        try:
            not_ready = tensorboard_board.wait_until_serving(url, server)
            if not_ready:
                children.kill(server)
                server_log.seek(0)
                lines = server_log.read().decode(errors="replace").strip().splitlines()
                raise UserError(f"TensorBoard did not start: {lines[-1] if lines else not_ready}")
            console.print(f"TensorBoard: {url}  (Ctrl-C to stop)", highlight=False, soft_wrap=True)
            server.wait()
        except KeyboardInterrupt:
            pass
        finally:
            children.stop(server)


from spotdiff.serve.cli import register as _register_serve
_register_serve(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors become one line and exit code 2.

    Typer itself answers malformed command lines (unknown option, missing value) with exit 2.
    """
    try:
        app(args=argv, prog_name="spotdiff")
    except UserError as error:
        err_console.print(f"spotdiff: error: {error}", highlight=False, markup=False)
        sys.exit(2)
