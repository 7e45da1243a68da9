"""Neutral numpy weights <-> PyTorch modules. PyTorch's layout IS the neutral one (OIHW, (out, in),
(C, H, W) flatten), so conversion is a copy; names are `<submodule>.weight|bias`."""

from __future__ import annotations

import numpy as np
import torch


def load_neutral(module: torch.nn.Module, neutral: dict[str, np.ndarray], flatten_layer: str | None = None,
                 flatten_chw: tuple[int, int, int] | None = None) -> None:
    """Copy neutral weights into `module`'s parameters of the same names; every name must match."""
    params = dict(module.named_parameters())
    missing = sorted(set(neutral) ^ set(params))
    if missing:
        raise KeyError(f"neutral weights and the module disagree on: {', '.join(missing)}")
    with torch.no_grad():
        for name, value in neutral.items():
            params[name].copy_(torch.from_numpy(value))


def to_neutral(named: dict[str, torch.Tensor], flatten_layer: str | None = None,
               flatten_chw: tuple[int, int, int] | None = None) -> dict[str, np.ndarray]:
    """Parameters (or their gradients) by name -> neutral numpy arrays."""
    return {name: value.detach().cpu().numpy().copy() for name, value in named.items()}
