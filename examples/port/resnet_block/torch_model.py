"""A small ResNet-style block net in PyTorch: the source model of the port examples.

Input (B, 3, 16, 16) NCHW. The stride-2 convolution pads one pixel on every side (`padding=1`), the
usual PyTorch idiom; a port has to reproduce that padding exactly (see keras_model.py).
"""

from __future__ import annotations

import torch
from torch import nn


class ResNetBlockNet(nn.Module):
    """conv3x3/2 + BN + ReLU, conv3x3 + BN, plus a 1x1/2 projection shortcut; ReLU, average pool, dense."""

    def __init__(self, in_channels: int = 3, channels: int = 8, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)  # eps 1e-5, momentum 0.1 (weight of the new batch)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Conv2d(in_channels, channels, 1, stride=2, bias=False)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, 3, 16, 16)
        y = torch.relu(self.bn1(self.conv1(x)))  # (B, 8, 8, 8)
        y = self.bn2(self.conv2(y))  # (B, 8, 8, 8)
        y = torch.relu(y + self.shortcut(x))  # (B, 8, 8, 8)
        return self.head(y.mean(dim=(2, 3)))  # (B, 8) -> (B, 10)


def build() -> ResNetBlockNet:
    return ResNetBlockNet()
