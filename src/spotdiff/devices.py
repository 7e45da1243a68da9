"""Which device a cell ran on, in words the report can show (neutral: no framework import).

A backend's `configure` reports the device it picked ("cuda:0", "/GPU:0", "cpu:0", ...); the
worker adds `device_label`, which says when `--device auto` or `gpu` fell back to the CPU.
"""

from __future__ import annotations

from typing import Any

GPU_WORDS = ("cuda", "gpu", "rocm")


def device_kind(device: Any) -> str | None:
    """'gpu' or 'cpu' from a backend's device string; None when nothing was recorded."""
    if not device:
        return None
    name = str(device).lower().split("(")[0]  # a label's note ("cpu (auto: no GPU)") is not the device
    return "gpu" if any(word in name for word in GPU_WORDS) else "cpu"


def device_label(requested: str, used: Any) -> str | None:
    """The device as the report shows it: 'gpu', 'cpu', or 'cpu (auto: no GPU)' when a GPU was
    allowed but none was seen."""
    kind = device_kind(used)
    if kind == "cpu" and requested == "auto":
        return "cpu (auto: no GPU)"
    if kind == "cpu" and requested == "gpu":
        return "cpu (--device gpu: no GPU)"
    return kind


def cell_device(cell: dict[str, Any]) -> str | None:
    """The device label of a recorded cell (results.json), None for a cell that never started."""
    settings = (cell.get("environment") or {}).get("settings") or {}
    return settings.get("device_label") or device_kind(settings.get("device"))


def peak_fraction(gflops_per_s: float, device: str | None, cpu_peak_gflops: float,
                  device_peak_gflops: float | None = None) -> float | None:
    """Achieved rate over the peak of the device the cell ran on: the CPU's measured matmul peak
    for a CPU cell; a GPU cell's own measured peak, or None (never the CPU's peak)."""
    if device_kind(device) == "gpu":
        return gflops_per_s / device_peak_gflops if device_peak_gflops else None
    return gflops_per_s / cpu_peak_gflops if cpu_peak_gflops else None
