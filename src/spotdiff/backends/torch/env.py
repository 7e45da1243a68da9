"""PyTorch process settings: threads, seed, device, float32 precision, device sync."""

from __future__ import annotations

from typing import Any

import torch

_device = torch.device("cpu")


def versions() -> dict[str, str]:
    return {"torch": torch.__version__}


def configure(threads: int, seed: int, device: str) -> dict[str, Any]:
    """Pin threads, seed and precision; pick the device ('auto', 'cpu' or 'gpu')."""
    global _device
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set by an earlier parallel op
        pass
    torch.manual_seed(seed)
    # Full float32 everywhere: no TF32 in matmul or convolution on GPUs that have it.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    use_gpu = device in ("auto", "gpu") and torch.cuda.is_available()
    _device = torch.device("cuda:0" if use_gpu else "cpu")
    return {
        "device": str(_device),
        "device_name": torch.cuda.get_device_name(0) if use_gpu else "cpu",
        "intra_op_threads": torch.get_num_threads(),
        "inter_op_threads": torch.get_num_interop_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "tf32": False,
    }


def device() -> torch.device:
    return _device


def sync(_: Any = None) -> None:
    """Wait for queued device work (CPU ops are already synchronous)."""
    if _device.type == "cuda":
        torch.cuda.synchronize(_device)


def peak_device_memory_mb() -> float | None:
    if _device.type == "cuda":
        return torch.cuda.max_memory_allocated(_device) / 2**20
    return None
