"""Task registry: task name -> neutral spec. Implementations are loaded only inside workers."""

from __future__ import annotations

import importlib

from spotdiff.errors import UserError
from spotdiff.tasks.base import TaskSpec

TASK_MODULES = {
    "exponent": "spotdiff.tasks.exponent.spec",
}


def task_names() -> list[str]:
    return list(TASK_MODULES)


def get_spec(name: str) -> TaskSpec:
    """The spec of task `name`; a UserError naming the valid tasks when unknown."""
    if name not in TASK_MODULES:
        raise UserError(f"unknown task {name!r}; choose from: {', '.join(task_names())}")
    return importlib.import_module(TASK_MODULES[name]).SPEC


def impl_module(task: str, impl_prefix: str) -> str:
    """The module path of one framework's implementation of `task`."""
    package = TASK_MODULES[task].rsplit(".", 1)[0]
    return f"{package}.{impl_prefix}_impl"
