"""Executors: where the cells of a run execute.

`local` (the default) runs them one after another on this machine (`executors/local.py`); `ray`
spreads them over a Ray cluster (`spotdiff.executors.ray_executor`). Both hand every finished
cell to the same `on_done` callback, so results.json, parity and the history store do not know
which one ran. Ray is imported only when the `ray` executor is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from spotdiff.errors import UserError
from spotdiff.executors.local import CellOutcome, LocalExecutor
from spotdiff.experiment import Cell, Experiment

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """Runs cells and reports each outcome as it completes; `close()` releases what it holds."""

    def run_cells(
        self, cells: list[Cell], run_dir: Path, timeout_s: float,
        on_start: Callable[[Cell], None], on_done: Callable[[CellOutcome], None],
    ) -> list[CellOutcome]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def start(exp: Experiment) -> Executor:
    """The executor `exp` asks for, ready to run (a Ray executor is connected to its cluster);
    a missing Ray or an unreachable cluster raises UserError before any cell starts."""
    if exp.executor == "local":
        return LocalExecutor()
    if exp.executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'spotdiff[cluster]'") from None
        from spotdiff.executors.ray_executor import RayExecutor

        return RayExecutor(exp.address)
    raise UserError(f"unknown executor {exp.executor!r}; choose from: {', '.join(EXECUTORS)}")
