"""The one way `--set` overrides become a task's parameters: filtered to the task, validated.

Every caller (experiment validation and expansion, the worker, data-parallel ranks, the report)
goes through `task_params`, so an invalid override reads the same everywhere:
`bad --set value for task digits: lr: Input should be a valid number, ...`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from spotdiff.errors import UserError


def one_line(error: ValidationError) -> str:
    """A pydantic error as one line: `field: message; field: message`."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "value"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def params_for(spec: Any, overrides: dict[str, Any]) -> BaseModel:
    """`spec.params` built from the overrides that name one of its fields; UserError if invalid."""
    fields = spec.params.model_fields
    try:
        return spec.params(**{k: v for k, v in overrides.items() if k in fields})
    except ValidationError as error:
        raise UserError(f"bad --set value for task {spec.name}: {one_line(error)}") from None


def task_params(task: str, overrides: dict[str, Any]) -> BaseModel:
    """The parameters of task `task` (by name) under `overrides`, validated."""
    from spotdiff.tasks import get_spec

    return params_for(get_spec(task), overrides)
