"""The cells of one task in a run, in the order every report shows them, and their labels.

It sits below plots.py and images.py: plots.py collects the misclassified-images figure that
images.py draws, and both order and label cells the same way, from here."""

from __future__ import annotations

from typing import Any

from spotdiff.errors import UserError
from spotdiff.tasks import get_spec
from spotdiff.tasks.base import TaskSpec


def task_spec(task: str) -> TaskSpec | None:
    """The registered spec of `task`, or None for a task this version does not know."""
    try:
        return get_spec(task)
    except (UserError, ImportError, AttributeError):
        return None


def ordered_cells(results: dict[str, Any], task: str) -> list[dict[str, Any]]:
    """The cells of `task` in the spec's framework and mode order, then variant and seed."""
    cells = [c for c in results.get("cells") or [] if c.get("task") == task]
    spec = task_spec(task)
    frameworks = list(spec.modes) if spec else []
    variants = list(spec.variants) if spec else []
    frameworks += [f for f in dict.fromkeys(c.get("framework") for c in cells) if f not in frameworks]
    variants += [v for v in dict.fromkeys(c.get("variant") for c in cells) if v not in variants]
    return sorted(cells, key=lambda c: (
        frameworks.index(c.get("framework")), mode_index(c, spec, cells),
        variants.index(c.get("variant")), c.get("seed") or 0))


def mode_index(cell: dict[str, Any], spec: TaskSpec | None, cells: list[dict[str, Any]]) -> int:
    framework, mode = cell.get("framework"), cell.get("mode")
    modes = list(spec.modes.get(framework, ())) if spec else []
    seen = dict.fromkeys(other.get("mode") for other in cells if other.get("framework") == framework)
    return (modes + [m for m in seen if m not in modes]).index(mode)


def cell_label(cell: dict[str, Any], with_seed: bool = False) -> str:
    label = f"{cell.get('framework')}-{cell.get('mode')}"
    return f"{label} s{cell.get('seed')}" if with_seed else label
