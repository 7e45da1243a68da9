"""The task contract: what every `tasks/<task>/<prefix>_impl.py` provides, written down once.

A task's spec (`spec.py`, neutral) declares how it trains and what else it offers (see the
capability fields of `spotdiff.tasks.base.TaskSpec`); its implementations, one module per
framework, provide the functions below. The worker dispatches on the spec, never on what a module
happens to contain, so a missing function is a one-line error naming it, not a silent fallback.

Two training styles exist, chosen by `TaskSpec.training`:

- "steps" (`StepTaskImpl`, e.g. exponent): the implementation builds a `spotdiff.measure.StepRunner`
  with a `final_metrics()` method; spotdiff does all the timing (warm-up, blocks, repeats) in
  `spotdiff.measure`.
- "loop" (`LoopTaskImpl`, e.g. digits, sequences, trees, gpt): the implementation owns its loop
  (epochs, data pipelines, `model.fit`) and returns a `CellOutcome`.

Nothing here imports a framework; the protocols are for readers, type checkers and tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
from pydantic import BaseModel

from spotdiff.measure import StepRunner  # reset, compile, run, sync, fetch (+ final_metrics)

# The functions each training style requires, checked when the worker loads an implementation.
REQUIRED = {"steps": ("build_runner",), "loop": ("run",)}


class CellOutcome(NamedTuple):
    """What a loop task's `run` returns: neutral numbers and paths, no framework objects.

    `metrics`: name -> number (or a small JSON value); `series`: name -> one value per step or
    epoch; `artifacts`: name -> file the cell wrote, relative to its cell directory (e.g.
    "weights": "weights.npz"), for the parent to read with numpy. A plain tuple
    `(metrics, series, artifacts)` is the same thing; `(metrics, series)` means no artifacts.
    """

    metrics: dict[str, Any]
    series: dict[str, list[float]]
    artifacts: dict[str, str] = {}


class StepTaskImpl(Protocol):
    """An implementation of a `training="steps"` task.

    `write_tensorboard` is needed only when the spec declares `tensorboard="own"`: the worker
    has written the per-step curves; this adds what only the framework can (graphs, histograms).
    """

    def build_runner(
        self, mode: str, variant: str, params: BaseModel, data: dict[str, np.ndarray], threads: int = 1
    ) -> StepRunner:
        """A step runner for one (mode, variant); `data` comes from the spec's `build_data`."""
        ...

    def write_tensorboard(self, runner: StepRunner, board: Any, series: dict[str, list[float]]) -> None:
        """Optional (`tensorboard="own"`): write framework-specific content to `board`."""
        ...


class LoopTaskImpl(Protocol):
    """An implementation of a `training="loop"` task.

    With `tensorboard="own"` the implementation writes its own TensorBoard run into
    `cell.tensorboard_dir`; otherwise the worker writes every returned series there.
    """

    def run(self, cell: Any, params: BaseModel, data: dict[str, np.ndarray], cell_dir: Path) -> CellOutcome:
        """Train one cell (`cell` is a `spotdiff.experiment.Cell`: mode, variant, seed, threads, ...)
        in its own loop and return what it measured."""
        ...


def missing_functions(training: str, impl: Any) -> list[str]:
    """The functions `training` requires that module `impl` lacks (empty: it fulfils the contract)."""
    return [name for name in REQUIRED[training] if not callable(getattr(impl, name, None))]
