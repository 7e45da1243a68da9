"""Recorded tensors of two frameworks compared against a measured noise floor (numpy only).

For one tensor and a pair A, B, each recorded in float32 and float64 from the same start:
- `diff64` = max |A64 - B64|: what the two frameworks compute differently, free of rounding;
- `diff32` = max |A32 - B32|: the difference a float32 user sees;
- `floor`  = max |A32 - A64| + max |B32 - B64|: how far float32 rounding moved each framework from
  its own float64 run, measured at this tensor and step; never below half a float32 ulp of the
  tensor's largest value (`FLOOR_ULPS`), which is as close as float32 can get;
- `ratio`  = diff64 / floor. A ratio above `THRESHOLD` is a difference float32 rounding cannot
  explain. Same math in different summation orders gives ratios near 1e-8; a planted difference
  (an epsilon, a convention, a layout) gives ratios of one and far more.
A tensor with NaN or inf, a missing tensor or different shapes gets no ratio, only a note.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

THRESHOLD = 2.0  # diff64 / floor above this: a divergence
FLOOR_ULPS = 0.5  # the floor's minimum, in float32 ulps (2**-23 relative) of the tensor's largest value
FLOAT32_ULP = 2.0**-23
PHASES = ("forward", "loss", "backward", "update")  # the order inside one step


@dataclass(frozen=True)
class Entry:
    """One recorded tensor: where it sits in a training step."""

    key: str  # "3/forward/conv1", "3/loss", "3/grad/conv1.weight", "3/param/conv1.weight"
    step: int
    phase: str  # forward | loss | backward | update
    name: str  # layer or parameter name
    kind: str  # the layer's kind (conv2d, dense, ...), "loss", or the parameter's layer kind


@dataclass
class Row:
    """One tensor of one pair."""

    key: str
    step: int
    phase: str
    name: str
    kind: str
    diff32: float | None
    diff64: float | None
    floor: float | None
    ratio: float | None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def entries(layers: list[list[str]], params: list[str], steps: int, buffers: list[str] = ()) -> list[Entry]:
    """Every recorded tensor in step order; inside a step: forward layers in order, the loss, every
    gradient, every parameter after the update, then every buffer (running statistics: updated,
    never differentiated). `layers` holds (name, kind) pairs."""
    kinds = dict((name, kind) for name, kind in layers)
    out = []
    for step in range(steps):
        out += [Entry(f"{step}/forward/{name}", step, "forward", name, kind) for name, kind in layers]
        out.append(Entry(f"{step}/loss", step, "loss", "loss", "loss"))
        out += [Entry(f"{step}/grad/{p}", step, "backward", p, _kind(kinds, p)) for p in params]
        out += [Entry(f"{step}/param/{p}", step, "update", p, _kind(kinds, p)) for p in (*params, *buffers)]
    return out


def _kind(kinds: dict[str, str], param: str) -> str:
    """The kind of the layer a parameter belongs to ("conv1.weight" -> kinds["conv1"])."""
    return kinds.get(param.rsplit(".", 1)[0], "param")


def _maxabs(value: np.ndarray) -> float:
    return float(np.max(np.abs(value))) if value.size else 0.0


def compare_tensor(entry: Entry, a32: Any, a64: Any, b32: Any, b64: Any) -> Row:
    """The row of one tensor (arrays, or None where a recording lacks it)."""
    empty = Row(entry.key, entry.step, entry.phase, entry.name, entry.kind, None, None, None, None)
    if any(v is None for v in (a32, a64, b32, b64)):
        empty.note = "not recorded"
        return empty
    a32, a64, b32, b64 = (np.asarray(v, dtype=np.float64) for v in (a32, a64, b32, b64))
    if a32.shape != b32.shape or a64.shape != b64.shape or a32.shape != a64.shape:
        empty.note = f"shapes differ: {a32.shape} vs {b32.shape}"
        return empty
    if not all(np.all(np.isfinite(v)) for v in (a32, a64, b32, b64)):
        empty.note = "non-finite values (NaN or inf)"
        return empty
    largest = max(_maxabs(a64), _maxabs(b64))
    floor = max(_maxabs(a32 - a64) + _maxabs(b32 - b64), FLOOR_ULPS * FLOAT32_ULP * largest, 1e-30)
    diff64 = _maxabs(a64 - b64)
    return Row(entry.key, entry.step, entry.phase, entry.name, entry.kind,
               _maxabs(a32 - b32), diff64, floor, diff64 / floor)


def compare_pair(order: list[Entry], a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    """Rows for every entry; `a`, `b`: {"float32": {key: array}, "float64": {key: array}}."""
    return [compare_tensor(e, a["float32"].get(e.key), a["float64"].get(e.key),
                           b["float32"].get(e.key), b["float64"].get(e.key)) for e in order]
