"""TensorFlow process settings: threads, seed, device, float32 precision, device sync."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

_gpu = False


def versions() -> dict[str, str]:
    import keras

    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def configure(threads: int, seed: int, device: str) -> dict[str, Any]:
    """Pin threads, seed and precision; pick the device ('auto', 'cpu' or 'gpu')."""
    global _gpu
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    gpus = tf.config.list_physical_devices("GPU")
    if device == "cpu" or not gpus:
        tf.config.set_visible_devices([], "GPU")
        gpus = []
    _gpu = bool(gpus)
    # TF enables TF32 on Ampere+ by default; the other frameworks here run full float32.
    tf.config.experimental.enable_tensor_float_32_execution(False)
    tf.random.set_seed(seed)
    return {
        "device": "/GPU:0" if _gpu else "/CPU:0",
        "device_name": gpus[0].name if _gpu else "cpu",
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "tf32": tf.config.experimental.tensor_float_32_execution_enabled(),
    }


def sync(_: Any = None) -> None:
    """Wait for queued device work (CPU eager ops are already synchronous)."""
    if _gpu:
        tf.test.experimental.sync_devices()


def peak_device_memory_mb() -> float | None:
    if _gpu:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return None
