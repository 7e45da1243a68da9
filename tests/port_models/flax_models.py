"""Test-only Flax NNX models for `spotdiff port` (tests/test_port.py): faithful and planted ports."""

import jax.numpy as jnp
from flax import nnx


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(6, 8, rngs=rngs)
        self.ln = nnx.LayerNorm(8, epsilon=1e-5, rngs=rngs)
        self.fc2 = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.fc2(nnx.relu(self.ln(self.fc1(x))))


class ConvNet(nnx.Module):
    """(B, 4, 4, 2) NHWC -> conv -> BatchNorm (PyTorch's eps and momentum) -> relu -> flatten -> dense."""

    def __init__(self, rngs: nnx.Rngs, chw_flatten: bool = False):
        self.conv = nnx.Conv(2, 4, (3, 3), padding="SAME", rngs=rngs)
        self.bn = nnx.BatchNorm(4, epsilon=1e-5, momentum=0.9, rngs=rngs)
        self.fc = nnx.Linear(4 * 4 * 4, 3, rngs=rngs)
        self.chw_flatten = chw_flatten

    def __call__(self, x):
        x = nnx.relu(self.bn(self.conv(x)))  # (B, 4, 4, 4) NHWC
        if self.chw_flatten:  # mimics PyTorch's flatten order: then the dense rows must NOT be permuted
            x = jnp.transpose(x, (0, 3, 1, 2))
        return self.fc(x.reshape(x.shape[0], -1))


def convnet_chw_flatten(rngs: nnx.Rngs):
    return ConvNet(rngs, chw_flatten=True)
