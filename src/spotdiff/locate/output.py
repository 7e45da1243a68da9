"""What `spotdiff where` leaves in its folder: where.json (every table) and where.html."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from spotdiff.locate.summary import paragraph

SCHEMA_VERSION = 1


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_outputs(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """where.json (with the summary paragraph) and where.html in `out_dir`."""
    from spotdiff.report.where import render_where

    summary = paragraph(result)
    document = {"schema": SCHEMA_VERSION, "kind": "where", "summary": summary, **_clean(result)}
    json_path = Path(out_dir) / "where.json"
    json_path.write_text(json.dumps(document, indent=1))
    return {"json": json_path, "html": render_where(result, out_dir, summary)}
