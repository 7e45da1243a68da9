"""BUGGY port (on purpose): flax_model.py with the stride-2 convolution padded "SAME".

Flax "SAME" with stride 2 pads (0, 1), as TensorFlow does; PyTorch's `padding=1` pads (1, 1). Every
output pixel of conv1 reads a window shifted by one: `spotdiff port` finds it at conv1 (cause:
stride-2 SAME padding).
"""

from __future__ import annotations

import jax
from flax import nnx


class ResNetBlockNet(nnx.Module):
    """conv3x3/2 + BN + ReLU, conv3x3 + BN, plus a 1x1/2 projection shortcut; ReLU, average pool, dense."""

    def __init__(self, in_channels: int = 3, channels: int = 8, num_classes: int = 10, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(in_channels, channels, (3, 3), strides=(2, 2), padding="SAME",  # BUG
                              use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, rngs=rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), padding="SAME", use_bias=False,
                              rngs=rngs)  # stride 1: SAME pads (1, 1)
        self.bn2 = nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, rngs=rngs)
        self.shortcut = nnx.Conv(in_channels, channels, (1, 1), strides=(2, 2), use_bias=False, rngs=rngs)
        self.head = nnx.Linear(channels, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:  # x (B, 16, 16, 3)
        y = nnx.relu(self.bn1(self.conv1(x)))  # (B, 8, 8, 8)
        y = self.bn2(self.conv2(y))  # (B, 8, 8, 8)
        y = nnx.relu(y + self.shortcut(x))  # (B, 8, 8, 8)
        return self.head(y.mean(axis=(1, 2)))  # (B, 8) -> (B, 10)


def build() -> ResNetBlockNet:
    return ResNetBlockNet(rngs=nnx.Rngs(0))
