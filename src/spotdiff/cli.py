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
from spotdiff.locate.cli import register as _register_where
from spotdiff.port.cli import register as _register_port
from spotdiff.probes.debug.cli import register as _register_debug
from spotdiff.probes.defaults.cli import register as _register_defaults
from spotdiff.serve.cli import register as _register_serve

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
    tasks: list[str] = typer.Argument(
        None, metavar="[TASK]...", help="tasks to run, each in every mode (default: exponent, digits)"
    ),
    frameworks: Optional[str] = typer.Option(
        None, "--frameworks", "-f", help="comma list (default: all installed)"
    ),
    modes: Optional[str] = typer.Option(
        None, "--modes", "-m", help="comma list (default: each framework's default modes; see --all)"
    ),
    all_: bool = typer.Option(False, "--all", help="every task and mode, not the default run's"),
    variant: Optional[str] = typer.Option(None, "--variant", help="manual | optimizer (default: both)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="training steps (task default: 2000)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seed for data and init (default 0)"),
    repeats: Optional[int] = typer.Option(
        None, "--repeats", help="exactly N timed repeats per cell (default: adaptive, 3 to 10)"
    ),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="threads/cores per cell (default: all cores)"
    ),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | gpu (default auto)"),
    precision: Optional[str] = typer.Option(
        None, "--precision", help="fp32 | bf16, run-wide (default fp32; tasks without bf16 skip)"
    ),
    cell_timeout: Optional[float] = typer.Option(
        None, "--cell-timeout", help="seconds per cell (default 900)"
    ),
    workers: Optional[int] = typer.Option(
        None, "--workers", help="data-parallel workers per cell, one core each (default 1; digits only)"
    ),
    set_: list[str] = typer.Option(None, "--set", help="task option key=value (repeatable)"),
    init: Optional[str] = typer.Option(
        None, "--init", help="shared | native weights for tasks with models (default shared)"
    ),
    hparams: Optional[str] = typer.Option(
        None,
        "--hparams",
        help="aligned | native: pass every optimiser setting, or leave unset ones to each framework's "
        "defaults (default aligned)",
    ),
    config: Optional[Path] = typer.Option(None, "--config", help="experiment TOML file"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory (default runs/<timestamp>)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a run in --out (default: refuse)"),
    task_module: list[Path] = typer.Option(
        None, "--task-module", help="your own task: a spec.py or its folder (repeatable)"
    ),
    executor: Optional[str] = typer.Option(
        None, "--executor", help="local | ray: where cells run (default local)"
    ),
    address: Optional[str] = typer.Option(
        None, "--address", help="Ray cluster HOST:PORT for --executor ray (default: start a local Ray)"
    ),
) -> None:
    """Run the comparison, one child process per cell: by default the post's two experiments in
    every installed framework's default modes; --all: every task x framework x mode x variant."""
    from spotdiff.experiment import PRECISIONS, build_experiment, expand, load_toml, parse_set
    from spotdiff.orchestrate import run_experiment
    from spotdiff.report.progress import Estimator, RunProgress
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
    if precision is not None and precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    if executor is not None and executor not in ("local", "ray"):
        raise UserError(f"unknown executor {executor!r}; choose from: local, ray")
    if task_module:
        settings["task_modules"] = [*settings.get("task_modules", []), *map(str, task_module)]
    flags = {
        "tasks": tasks or None,
        "frameworks": _split(frameworks),
        "modes": _split(modes),
        "variants": [variant] if variant else None,
        "seed": seed,
        "repeats": repeats,
        "threads": threads,
        "device": device,
        "precision": precision,
        "cell_timeout_s": cell_timeout,
        "workers": workers,
        "executor": executor,
        "address": address,
        "selection": "all" if all_ else None,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    settings["overrides"] = overrides
    exp = build_experiment(settings)
    cells = expand(exp)
    progress = RunProgress(cells, console, Estimator.from_store(cells, exp.model_dump()))
    warnings: list[str] = []  # printed last, after the tables, where they are seen
    try:
        with progress:
            results, run_dir = run_experiment(
                exp,
                out,
                on_start=progress.on_start,
                on_done=progress.on_done,
                overwrite=overwrite,
                on_warning=warnings.append,
            )
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted after {progress.summary()}: finished cells kept in results.json, report written",
            highlight=False,
        )
        raise typer.Exit(130)
    console.print(progress.summary(), highlight=False)
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
    task_module: list[Path] = typer.Option(
        None, "--task-module", help="also list this task (spec.py or folder)"
    ),
) -> None:
    """Tasks, their modes and variants, and the installed frameworks with versions."""
    from rich.table import Table

    from spotdiff.experiment import default_modes
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
        modes = Table(
            title=f"task {task}: {spec.summary}; variants: {', '.join(spec.variants)}", title_justify="left"
        )
        modes.add_column("framework")
        modes.add_column("mode")
        modes.add_column("default run")
        modes.add_column("what it runs")
        for framework, names in spec.modes.items():
            known = framework in fw.FRAMEWORKS
            present = known and has_impl(task, fw.FRAMEWORKS[framework].impl_prefix)
            defaults = default_modes(spec, framework) if known and spec.default_run else ()
            for mode in names:
                note = "" if present else " [yellow](no implementation: cells are skipped)[/]"
                modes.add_row(
                    framework,
                    mode,
                    "yes" if mode in defaults else "",
                    spec.mode_help.get((framework, mode), "") + note,
                )
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
def history(
    limit: int = typer.Option(20, "--limit", help="how many runs to show (default 20)"),
    trend: Optional[str] = typer.Option(
        None, "--trend", help="one cell across runs: a cell id or TASK/FRAMEWORK/MODE/VARIANT"
    ),
    metric: Optional[str] = typer.Option(None, "--metric", help="the metric --trend follows"),
    plot: Optional[Path] = typer.Option(
        None, "--plot", help="--trend plot, .png or .svg (default SPOTDIFF_HOME/trends/<cell>-<metric>.png)"
    ),
) -> None:
    """Past runs from the SQLite store (SPOTDIFF_HOME, default ~/.spotdiff); --trend: one metric of
    one cell across them, as a table and a plot file."""
    from spotdiff.record import store
    from spotdiff.report.terminal import history_table

    if trend is None and (metric or plot):
        raise UserError("--metric and --plot go with --trend CELL (a cell id or TASK/FRAMEWORK/MODE/VARIANT)")
    if trend is not None:
        from spotdiff.report.trend import default_plot_path, trend_table, write_trend_plot
        from spotdiff.trend import cell_trend

        followed = cell_trend(trend, metric, store.cell_history())
        console.print(trend_table(followed))
        path = write_trend_plot(followed, plot or default_plot_path(store.home() / "trends", followed))
        console.print(f"plot:  {path}", highlight=False, soft_wrap=True)
        return
    runs = store.list_runs(limit)
    if not runs:
        console.print(f"no runs recorded yet in {store.db_path()}")
        return
    console.print(history_table(runs))


@app.command()
def compare(
    run_a: Path = typer.Argument(..., help="the baseline run directory (with results.json)"),
    run_b: Path = typer.Argument(..., help="the run to judge against it"),
    threshold: float = typer.Option(1.1, "--threshold", help="ratio B/A a change must pass (default 1.1)"),
    out: Optional[Path] = typer.Option(
        None, "--out", help="folder for compare.html and compare.json (default: RUN_B/compare-<RUN_A name>)"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace compare.html/json in a used --out"),
    show_all: bool = typer.Option(False, "--all", help="list every metric, not only those that changed"),
) -> None:
    """What changed from RUN_A to RUN_B beyond noise. Exit code 1 when anything got worse (for CI)."""
    from spotdiff.compare import compare_runs
    from spotdiff.record import results as results_file
    from spotdiff.report.compare import prepare_out_dir, write_comparison
    from spotdiff.report.compare_terminal import compare_renderables

    comparison = compare_runs(results_file.load(run_a), results_file.load(run_b), threshold)
    out_dir = prepare_out_dir(out or run_b / f"compare-{run_a.resolve().name}", overwrite)
    html_path, json_path = write_comparison(comparison, out_dir, run_a, run_b)
    for renderable in compare_renderables(comparison, show_all):
        console.print(renderable, highlight=False)
    console.print(f"html:  {html_path}\njson:  {json_path}", highlight=False, soft_wrap=True)
    if comparison.got_worse():
        raise typer.Exit(1)


_register_debug(app)
_register_defaults(app)
_register_where(app)
_register_port(app)


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
