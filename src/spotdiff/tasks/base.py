"""The neutral description every task provides (no framework import allowed here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from pydantic import BaseModel


@dataclass(frozen=True)
class TaskSpec:
    """A workload, described once for every framework.

    `modes` maps a framework name to its modes; `mode_help` explains each (framework, mode).
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
