"""Default initialisers by sampling: summary statistics of a freshly built parameter, and the
initialiser hypothesis (components.init_candidates) those statistics are consistent with."""

from __future__ import annotations

from typing import Any

import numpy as np

from spotdiff.probes.defaults.components import COMPONENTS, init_candidates

TRUNCATED_RATIO = 2 / 0.87962566  # max|x| / std of a normal truncated at two (raw) deviations


def _orthogonal(array: np.ndarray, blocks: int) -> bool:
    """Orthonormal columns (neutral (G*h, h) layout), for the whole matrix or every gate block."""
    if array.ndim != 2:
        return False
    for parts in ([array], np.split(array, blocks) if blocks > 1 and array.shape[0] % blocks == 0 else []):
        if parts and all(np.allclose(p.T @ p, np.eye(p.shape[1]), atol=1e-4) for p in parts):
            return True
    return False


def init_stats(array: np.ndarray, component: str) -> dict[str, Any]:
    """mean, std, min, max, size; per gate block means/stds for recurrent layers; orthogonality."""
    x = np.asarray(array, np.float64)
    blocks = COMPONENTS[component].init_dims.get("gates", 1)
    split = np.split(x, blocks) if blocks > 1 and x.shape[0] % blocks == 0 else [x]
    return {
        "shape": list(x.shape), "n": int(x.size), "mean": float(x.mean()), "std": float(x.std()),
        "min": float(x.min()), "max": float(x.max()),
        "block_means": [float(b.mean()) for b in split], "block_stds": [float(b.std()) for b in split],
        "orthogonal": _orthogonal(x, blocks),
    }


def _fits(stats: dict[str, Any], family: str, scale: Any) -> float | None:
    """How far the sample is from the hypothesis (relative), or None when it cannot be it."""
    std, n = stats["std"], stats["n"]
    peak = max(abs(stats["min"]), abs(stats["max"]))
    std_tol = max(0.03, 3 / np.sqrt(n))
    if family == "const":
        return 0.0 if stats["min"] == stats["max"] == scale else None
    if family == "blocks":
        ok = len(stats["block_means"]) == len(scale) and max(stats["block_stds"]) == 0
        return 0.0 if ok and np.allclose(stats["block_means"], scale) else None
    if family == "orthogonal":
        return 0.0 if stats["orthogonal"] else None
    if std == 0:
        return None
    if family == "uniform":
        bound_err, std_err = abs(peak - scale) / scale, abs(std - scale / np.sqrt(3)) / (scale / np.sqrt(3))
        ok = peak <= scale * 1.0001 and bound_err <= max(0.02, 8 / n) and std_err <= std_tol
        return max(bound_err, std_err) if ok else None
    std_err = abs(std - scale) / scale
    if std_err > std_tol:
        return None
    if family == "truncnormal":
        return std_err if abs(peak / std - TRUNCATED_RATIO) < 0.1 else None
    return std_err if peak / std > 3.0 else None  # a normal sample this size reaches 3 std


def identify(stats: dict[str, Any], component: str) -> str:
    """The best-fitting hypothesis label, or `unidentified (std ..., max|x| ...)`."""
    fits = [(err, label) for label, family, scale in init_candidates(component)
            if (err := _fits(stats, family, scale)) is not None]
    if not fits:
        peak = max(abs(stats["min"]), abs(stats["max"]))
        return f"unidentified (std {stats['std']:.4g}, max|x| {peak:.4g})"
    return min(fits)[1]
