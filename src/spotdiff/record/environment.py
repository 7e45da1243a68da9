"""The machine and software a run used, collected in the parent without importing a framework."""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from typing import Any

from spotdiff import frameworks as fw
from spotdiff._version import __version__

# Environment variables that change what a framework computes or how fast.
RELEVANT_FLAGS = (
    "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TF_ENABLE_ONEDNN_OPTS", "XLA_FLAGS",
    "TF_XLA_FLAGS", "JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES", "TORCHINDUCTOR_COMPILE_THREADS",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def collect(threads: int, device: str) -> dict[str, Any]:
    return {
        "spotdiff": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_affinity_cores": len(os.sched_getaffinity(0)),
        "threads": threads,
        "device": device,
        "dtype": "float32",
        "frameworks": {name: fw.installed_version(name) for name in fw.FRAMEWORKS},
        "flags": {name: os.environ[name] for name in RELEVANT_FLAGS if name in os.environ},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def matmul_peak_gflops(threads: int, size: int = 1024, repeats: int = 5) -> float:
    """This machine's single-precision matmul rate with `threads` BLAS threads: the best of a few
    float32 (size x size) products through numpy, in GFLOP/s (2 n^3 flops each)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    best = float("inf")
    with threadpool_limits(limits=threads):
        a @ b  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9
