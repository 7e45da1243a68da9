"""Test-only task `planted`: one small network recorded by `spotdiff where`, with ONE known
difference planted in ONE framework (`--set plant=WHAT:FRAMEWORK`), never in shipped code.

The network: conv 3x3 stride 2 SAME (1 -> 2 channels, 8x8 -> 4x4), BatchNorm, ReLU, flatten,
dense 32 -> 8, LayerNorm, GRU (two time steps of 4), dense 4 -> 3, cross-entropy; SGD or RMSprop.
Every implementation runs the same JAX code (`planted_net.py`): the test is of `where`'s engine,
the conventions each framework really has are the catalogue's (spotdiff.locate.causes).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from spotdiff.tasks.base import TaskSpec

PLANTABLE = ("flatten_order", "same_padding", "batchnorm_eps", "batchnorm_momentum", "layernorm_eps",
             "gru_reset_after", "rmsprop_eps")


class PlantedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plant: str = Field("", description="WHAT:FRAMEWORK, WHAT one of PLANTABLE; empty: nothing")
    optimizer: Literal["sgd", "rmsprop"] = "sgd"
    lr: float = 0.05
    batch: int = 6
    steps: int = 3


def build_data(params: PlantedParams, seed: int) -> dict[str, np.ndarray]:
    """Images (B, 1, 8, 8), labels (B,) and the shared weights (PyTorch layouts), float32."""
    rng = np.random.default_rng(seed)
    shapes = {"conv.weight": (2, 1, 3, 3), "conv.bias": (2,), "dense.weight": (8, 32), "dense.bias": (8,),
              "gru.weight_ih": (12, 4), "gru.weight_hh": (12, 4), "gru.bias_ih": (12,), "gru.bias_hh": (12,),
              "out.weight": (3, 4), "out.bias": (3,)}
    data = {f"w:{k}": rng.normal(0, 0.5, s).astype(np.float32) for k, s in shapes.items()}
    data.update({"w:bn.weight": np.ones(2, np.float32), "w:bn.bias": np.zeros(2, np.float32),
                 "w:ln.weight": np.ones(8, np.float32), "w:ln.bias": np.zeros(8, np.float32)})
    data["x"] = rng.uniform(0, 1, (params.batch, 1, 8, 8)).astype(np.float32)
    data["y"] = rng.integers(0, 3, params.batch).astype(np.int32)
    return data


def _none(*args: Any) -> dict[str, Any]:
    return {}


SPEC = TaskSpec(
    name="planted",
    summary="test-only: a small network with one planted framework difference",
    modes={"torch": ("eager",), "tensorflow": ("eager",), "jax": ("eager",)},
    mode_help={},
    variants=("train",),
    params=PlantedParams,
    build_data=build_data,
    derive_metrics=_none,
    parity=_none,
    where_steps=3,
)
