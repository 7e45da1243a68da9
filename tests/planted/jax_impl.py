"""Test-only: the planted task as "jax" (the same JAX network for every framework; see spec.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
from planted_net import record

RECORDS_WITH = "jax"  # every framework's child runs the JAX network: it imports JAX only


def record_steps(params: Any, data: dict[str, np.ndarray], steps: int, dtype: str, align: dict[str, Any],
                 mode: str, variant: str) -> dict[str, Any]:
    return record("jax", params, data, steps, dtype, align)
