"""Test-only PyTorch models for `spotdiff port` (tests/test_port.py): the sources."""

from torch import nn


class MLP(nn.Module):
    """(B, 6) -> dense 8 -> LayerNorm -> relu -> dense 3."""

    def __init__(self, hidden: int = 8):
        super().__init__()
        self.fc1 = nn.Linear(6, hidden)
        self.ln = nn.LayerNorm(hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.fc2(self.relu(self.ln(self.fc1(x))))


def wider_mlp():
    return MLP(hidden=9)


class ConvNet(nn.Module):
    """(B, 2, 4, 4) NCHW -> conv 3x3 -> BatchNorm -> relu -> flatten (C, H, W) -> dense 3."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(self.flatten(self.relu(self.bn(self.conv(x)))))


def broken():
    raise RuntimeError("this factory always fails")
