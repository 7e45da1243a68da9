"""The event stream between a worker and the runner: one JSON object per line in a file.

Kinds: `environment` (what the child pinned and found), `metrics` (scalars), `series`
(per-step arrays), `artifact` (a file the cell wrote), `done`, `error`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class EventWriter:
    """Appends events, flushed line by line so a crash loses at most the event being written."""

    def __init__(self, path: Path):
        self._handle = open(path, "a", encoding="utf-8")

    def emit(self, kind: str, **payload: Any) -> None:
        self._handle.write(json.dumps({"event": kind, **payload}) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event in `path`; a torn last line (child killed mid-write) is dropped."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
