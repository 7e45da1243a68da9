"""JAX process settings: seed, device, float32 precision, device sync.

XLA's CPU client sizes its thread pool from the `NPROC` environment variable when it is set (else
one thread per core the process may use). `spotdiff.children` sets NPROC to the thread count
before JAX is imported, so the pool holds exactly T threads whatever the CPU affinity allows;
there is no jax.config knob for it.
"""

from __future__ import annotations

import os
from typing import Any

import jax

_device: Any = None


def versions() -> dict[str, str]:
    import jaxlib

    found = {"jax": jax.__version__, "jaxlib": jaxlib.__version__}
    for name in ("flax", "optax"):
        try:
            module = __import__(name)
            found[name] = module.__version__
        except ImportError:
            pass
    return found


def configure(threads: int, seed: int, device: str) -> dict[str, Any]:
    """Pin precision and pick the device ('auto', 'cpu' or 'gpu'); seeds are explicit keys in JAX."""
    global _device
    jax.config.update("jax_default_matmul_precision", "highest")  # no TF32/bf16 passes on GPU
    gpus = []
    if device in ("auto", "gpu"):
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:
            gpus = []
    _device = gpus[0] if gpus else jax.devices("cpu")[0]
    jax.config.update("jax_default_device", _device)
    return {
        "device": f"{_device.platform}:{_device.id}",
        "device_name": getattr(_device, "device_kind", "cpu"),
        "intra_op_threads": int(os.environ.get("NPROC") or len(os.sched_getaffinity(0))),  # docstring
        "matmul_precision": "highest",
        "tf32": False,
        "x64": bool(jax.config.jax_enable_x64),
    }


def sync(x: Any = None) -> None:
    """Block until `x` (any pytree of arrays) is computed."""
    if x is not None:
        jax.block_until_ready(x)


def peak_device_memory_mb() -> float | None:
    if _device is not None and _device.platform == "gpu":
        stats = _device.memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
        return peak / 2**20 if peak else None
    return None
