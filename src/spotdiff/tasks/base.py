"""The neutral description every task provides (no framework import allowed here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
from pydantic import BaseModel

# The optional report sections a task can declare in `TaskSpec.report_sections`.
REPORT_SECTIONS = ("static_dynamic", "padding_chart")


@dataclass(frozen=True)
class TaskSpec:
    """A workload, described once for every framework.

    `modes` maps a framework name to its modes; `mode_help` explains each (framework, mode).
    `default_run` puts the task in a plain `spotdiff run`, in each framework's `default_modes`
    (a framework missing there: the modes its registry marks default, else all of them).
    `params` is a pydantic model: its fields are the `--set` keys, its defaults the task's defaults.
    `build_data(params, seed)` returns numpy arrays every implementation trains on.
    `derive_metrics(metrics, series, params)` adds neutral metrics computed from what a cell recorded.
    `parity(cells)` compares ok cells of this task across frameworks and modes.
    """

    name: str
    summary: str
    modes: dict[str, tuple[str, ...]]
    mode_help: dict[tuple[str, str], str]
    variants: tuple[str, ...]
    params: type[BaseModel]
    build_data: Callable[[BaseModel, int], dict[str, np.ndarray]]
    derive_metrics: Callable[[dict[str, Any], dict[str, list[float]], BaseModel], dict[str, Any]]
    parity: Callable[[list[dict[str, Any]], BaseModel], dict[str, Any]]
    # Metrics the report plots and tables show, in order: (key, label, unit, lower_is_better)
    headline_metrics: tuple[tuple[str, str, str, bool], ...] = ()
    # Series the report plots against step: (key, label, log_scale)
    plotted_series: tuple[tuple[str, str, bool], ...] = ()
    references: dict[str, Any] = field(default_factory=dict)
    # `spotdiff where`: steps recorded by default; None: the impls have no `record_steps` (see
    # spotdiff.locate: record_steps(params, data, steps, dtype, align, mode, variant) -> tensors).
    where_steps: int | None = None
    # Parent-side check before any cell starts (numpy only): fetch/verify data, raise UserError.
    prepare: Callable[[BaseModel], None] | None = None
    # The test images (N, H, W) and labels the cells' `misclassified_index` series point into.
    test_images: Callable[[BaseModel, int], tuple[np.ndarray, np.ndarray]] | None = None
    # Modes whose first step traces or compiles a program, per framework: only their `compile_s` is
    # shown (an eager mode's first-step overhead is not a compile). Empty: not declared, all shown.
    compiling_modes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Run-wide `--precision` values this task implements (other values: its cells are skipped).
    precisions: tuple[str, ...] = ("fp32",)
    # In the default run (`spotdiff run` naming no task or mode; `--all` runs every task and mode).
    default_run: bool = False
    default_modes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    # Capabilities: what the worker, the report and the tools do with this task, declared here and
    # never discovered from an implementation module (the contract: spotdiff.tasks.contract).
    # How a cell trains: "steps": each impl's `build_runner(mode, variant, params, data, threads)`
    # returns a step runner spotdiff times; "loop": each impl's `run(cell, params, data, cell_dir)`
    # owns the loop and returns a CellOutcome.
    training: Literal["steps", "loop"] = "steps"
    # Who writes a cell's TensorBoard run: "steps": the worker, per-step curves (steps tasks);
    # "series": the worker, every returned series (loop tasks); "own": the impl as well (steps:
    # `write_tensorboard(runner, board, series)` after the curves; loop: all of it, inside `run`).
    # None: "steps" or "series", by `training`.
    tensorboard: Literal["steps", "series", "own"] | None = None
    # `--workers N > 1`: framework -> the modes its `<prefix>_dp_impl.py` engine runs (empty: none).
    data_parallel_modes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Frameworks whose impl has `debug_graph(params, data) -> (fn, args)`, what `spotdiff debug`'s
    # graph probe traces (others: that probe is skipped with the reason).
    debug_graph_targets: tuple[str, ...] = ()
    # Optional report sections showing this task's cells: "static_dynamic" (the static-vs-dynamic
    # table; throughput: the first `*_per_s` headline metric), "padding_chart" (epoch time against
    # the `padding_waste` metric).
    report_sections: tuple[str, ...] = ()
    # Frameworks whose trained cells `spotdiff export` / `serve` can export (their saved "weights"
    # artifact loaded into the framework's model, see backends/<fw>/export.py).
    exportable_models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.tensorboard is None:  # frozen: set the derived default once
            object.__setattr__(self, "tensorboard", "steps" if self.training == "steps" else "series")
