"""Keras 3 process settings: the backend it runs on, seed, float32 (or float64 for a while), sync.

The backend is the cell's mode (spotdiff.frameworks: `jax`, `jax-jit`, `torch`, ...); the worker
sets KERAS_BACKEND from it before this module is imported. The backend framework is imported and
pinned by its own env module (threads, device, TF32 off), then Keras on top of it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import random
from collections.abc import Iterator
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


@contextlib.contextmanager
def computing_in(dtype: str) -> Iterator[None]:
    """Inside, Keras builds and computes in `dtype` ("float32" or "float64") on any backend: floatx
    and the global dtype policy (layers take the policy, losses and optimizer variables floatx).

    For float64 also: JAX's x64, and Keras' own type promotion keeps float64. Keras 3 maps every
    float64 result to float32 except on TensorFlow (as JAX does without x64), so a Dense layer's
    matmul, ops.mean or a loss's reduction given float64 compute in float32 on JAX and PyTorch;
    a float64 reference run (`spotdiff where`) must not. Everything is restored on the way out.
    """
    from keras.src.backend.common import dtypes  # the promotion table has no public switch

    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    table = getattr(dtypes, "BIT64_TO_BIT32_DTYPE", {})
    narrowed = table.get("float64", "float64")
    x64 = None
    if BACKEND == "jax" and dtype == "float64":
        import jax

        x64 = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", True)
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    if dtype == "float64":
        table["float64"] = "float64"
    try:
        yield
    finally:
        table["float64"] = narrowed
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)
        if x64 is not None:
            jax.config.update("jax_enable_x64", x64)
