"""Run an Experiment end to end: cells -> results.json -> parity -> history -> report."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Callable

from spotdiff import executors
from spotdiff.devices import cell_device, device_kind, peak_fraction
from spotdiff.executors.local import CellOutcome
from spotdiff.experiment import Cell, Experiment, expand, task_params
from spotdiff.record import environment, run_folder, store
from spotdiff.record import results as results_file
from spotdiff.tasks import get_spec


def compute_parity(cells: list[dict[str, Any]], exp: Experiment) -> dict[str, Any]:
    parity = {}
    for task in exp.tasks:
        task_cells = [c for c in cells if c["task"] == task]
        parity[task] = get_spec(task).parity(task_cells, task_params(task, exp.overrides))
    return parity


def run_experiment(
    exp: Experiment,
    run_dir: Path | None = None,
    on_start: Callable[[Cell], None] = lambda cell: None,
    on_done: Callable[[CellOutcome], None] = lambda outcome: None,
    index: bool = True,
    render: bool = True,
    overwrite: bool = False,
    on_warning: Callable[[str], None] = warnings.warn,
) -> tuple[dict[str, Any], Path]:
    """Run every cell of `exp`; return (results, run_dir). On Ctrl-C the finished cells are kept,
    the report is still written, and KeyboardInterrupt is re-raised.

    `run_dir` None: a new `runs/<timestamp>[-N]`. A `run_dir` that holds a run raises UserError
    unless `overwrite` (then the old run is removed first). A history store that cannot be written
    does not fail the run: `on_warning` gets one line saying why and how to recover."""
    cells = expand(exp)
    executor = executors.start(exp)  # connects to a cluster first: a bad address writes no run directory
    try:
        run_dir = run_folder.claim(Path(run_dir) if run_dir else None, overwrite)
    except BaseException:
        executor.close()
        raise
    results: dict[str, Any] = {
        "schema": results_file.SCHEMA_VERSION,
        "run_id": f"{run_dir.resolve().name}-{int(time.time() * 1000) % 100000:05d}",
        "status": "running",
        "environment": {**environment.collect(exp.threads, exp.device), "executor": executor.describe()},
        "experiment": exp.model_dump(),
        "cells": [],
        "parity": {},
    }
    path = run_dir / "results.json"
    order = {cell.id: index for index, cell in enumerate(cells)}
    results_file.write(path, results)

    def record(outcome: CellOutcome) -> None:
        rate = outcome.metrics.get("gflops_per_s")
        if rate:  # achieved FLOP rate as a fraction of the matmul peak of the device the cell ran on
            device = cell_device(outcome.as_record())
            if device_kind(device) != "gpu" and "matmul_peak_gflops" not in results["environment"]:
                results["environment"]["matmul_peak_gflops"] = environment.matmul_peak_gflops(exp.threads)
            outcome.metrics["peak_fraction"] = peak_fraction(
                rate, device, results["environment"].get("matmul_peak_gflops", 0.0),
                outcome.metrics.get("device_matmul_peak_gflops"))
            outcome.metrics["peak_device"] = device
        results["cells"].append(outcome.as_record())
        results["cells"].sort(key=lambda c: order[c["id"]])  # cells may finish out of order on a cluster
        results_file.write(path, results)
        on_done(outcome)

    interrupted = False
    try:
        executor.run_cells(cells, run_dir, exp.cell_timeout_s, on_start=on_start, on_done=record)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        executor.close()
    results["status"] = "interrupted" if interrupted else "complete"
    results["environment"]["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["parity"] = compute_parity(results["cells"], exp)
    results_file.write(path, results)
    if index:
        try:
            store.index_run(results, run_dir)
        except store.StoreError as error:  # the results are on disk: the run itself succeeded
            on_warning(f"results kept in {run_dir}, but not in the history: {error}")
    if render:
        from spotdiff.report.html import render_report

        render_report(results, run_dir)
    if interrupted:
        raise KeyboardInterrupt
    return results, run_dir
