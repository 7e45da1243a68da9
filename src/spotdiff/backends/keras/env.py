"""Keras 3 process settings: the backend it runs on, seed, float32, device sync.

The backend is the cell's mode (spotdiff.frameworks: `jax`, `jax-jit`, `torch`, ...); the worker
sets KERAS_BACKEND from it before this module is imported. The backend framework is imported and
pinned by its own env module (threads, device, TF32 off), then Keras on top of it.
"""

from __future__ import annotations

import importlib
import os
import random
from typing import Any

# The backend's own env first: it imports the backend framework before Keras does.
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
backend_env = importlib.import_module(f"spotdiff.backends.{BACKEND}.env")

import keras  # noqa: E402  (after KERAS_BACKEND and the backend framework)
import numpy as np  # noqa: E402


def versions() -> dict[str, str]:
    return {"keras": keras.__version__, "keras_backend": keras.backend.backend(), **backend_env.versions()}


def configure(threads: int, seed: int, device: str) -> dict[str, Any]:
    """The backend's own pinning (threads, device, precision), then Keras' float32 and seeds."""
    settings = backend_env.configure(threads, seed, device)  # seeds the backend's generator too
    keras.config.set_floatx("float32")
    # Not keras.utils.set_random_seed: it imports TensorFlow whenever it is installed, on every
    # backend (for tf.data's seed), which would put a second framework into a JAX or torch cell.
    # Keras draws the seeds of its layers' SeedGenerators from Python's `random`.
    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() != BACKEND:
        raise RuntimeError(f"KERAS_BACKEND={BACKEND} but Keras runs on {keras.backend.backend()}")
    return {**settings, "keras_backend": keras.backend.backend(), "floatx": keras.config.floatx()}


def sync(x: Any = None) -> None:
    """Wait for the backend's queued device work (and for `x` on JAX)."""
    backend_env.sync(x)


def peak_device_memory_mb() -> float | None:
    return backend_env.peak_device_memory_mb()
