"""results.json: the source of truth of a run, rewritten atomically after every cell.

{
  "schema": 1,
  "run_id": str, "status": "running" | "complete" | "interrupted",
  "environment": {...}, "experiment": {...},
  "cells": [{"id", "task", "framework", "mode", "variant", "status": "ok"|"failed"|"skipped",
             "error": str|null, "stderr_tail": str|null, "environment": {...},
             "metrics": {name: number|null}, "series": {name: [numbers]}}],
  "parity": {task: {variant: {...}}}
}
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write(path: Path, results: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a torn results.json."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(results), indent=1), encoding="utf-8")
    os.replace(tmp, path)


def load(run_dir: Path) -> dict[str, Any]:
    from spotdiff.errors import UserError

    path = Path(run_dir) / "results.json"
    if not path.exists():
        raise UserError(f"no results.json in {run_dir}")
    text = path.read_text(encoding="utf-8")
    if not text.strip():  # claimed by a run that has not written its first results yet (or was killed)
        raise UserError(f"results.json in {run_dir} is empty: its run is just starting, or was stopped "
                        "before it wrote anything")
    try:
        results = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"results.json in {run_dir} is not valid JSON: {error}") from None
    if not isinstance(results, dict) or "cells" not in results:
        raise UserError(f"{path} is not a spotdiff results file (no 'cells')")
    return results
