"""What `spotdiff port` leaves in its folder: port.json (every table, as where.json) and port.html
(the `where` heat map section)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spotdiff.locate.output import SCHEMA_VERSION, _clean
from spotdiff.locate.summary import paragraph


def write_outputs(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    from spotdiff.report.where import render_where

    summary = paragraph(result)
    document = {"schema": SCHEMA_VERSION, "kind": "port", "summary": summary, **_clean(result)}
    json_path = Path(out_dir) / "port.json"
    json_path.write_text(json.dumps(document, indent=1))
    html_path = Path(out_dir) / "port.html"
    render_where(result, out_dir, summary).replace(html_path)
    return {"json": json_path, "html": html_path}
