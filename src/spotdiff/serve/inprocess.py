"""In-process latency, run as a child: `python -m spotdiff.serve.inprocess MODEL_ROOT REPEATS [NAME ...]`.

Loads the models with the server's own loaders and times `predict` on one image, after a warm-up,
so that REST latency minus this number is what the protocol stack costs. One JSON line per model.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from spotdiff.serve.models import load_models

MARK = "SPOTDIFF_INPROCESS "
WARMUP = 20


def time_predict(predict, image: np.ndarray, repeats: int) -> dict:
    for _ in range(WARMUP):
        predict(image)
    times_ms = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(image)  # every loader returns numpy: the result is ready when the call returns
        times_ms.append((time.perf_counter() - start) * 1e3)
    p50, p90 = np.percentile(times_ms, [50, 90])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "min_ms": float(min(times_ms)), "repeats": repeats}


def main(argv: list[str]) -> int:
    root, repeats, names = Path(argv[0]), int(argv[1]), set(argv[2:])
    image = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)  # (1, 28, 28, 1)
    for name, versions in load_models(root).items():
        if names and name not in names:
            continue
        model = versions[max(versions)]
        row = {"model": name, "format": model.format, **time_predict(model.predict, image, repeats)}
        print(MARK + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
