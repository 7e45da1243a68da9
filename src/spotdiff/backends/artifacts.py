"""Neutral helpers that every `backends/<fw>/export.py` shares, in numpy only: the version folder an
export writes, its size on disk, and the parity of its logits with the in-process model's."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

LOGIT_TOL = 1e-4


def size_bytes(path: Path) -> int:
    return (
        path.stat().st_size
        if path.is_file()
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )


def parity(reference: np.ndarray, exported: np.ndarray) -> dict:
    max_abs = float(np.max(np.abs(reference - exported)))
    same_argmax = bool(np.array_equal(reference.argmax(1), exported.argmax(1)))
    return {
        "max_abs_diff": max_abs,
        "same_argmax": same_argmax,
        "parity_ok": max_abs <= LOGIT_TOL and same_argmax,
    }


def target(root: Path, name: str, version: int) -> Path:
    folder = root / name / str(version)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
