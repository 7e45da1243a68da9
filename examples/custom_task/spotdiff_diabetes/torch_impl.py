"""diabetes in PyTorch: nn.Sequential, MSELoss, torch.optim.Adam."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def build_model(data: dict[str, np.ndarray]) -> nn.Module:
    model = nn.Sequential(nn.Linear(*data["w1"].shape), nn.Tanh(), nn.Linear(*data["w2"].shape))
    with torch.no_grad():  # shared init: Linear keeps (out, in), the spec stores (in, out)
        model[0].weight.copy_(torch.from_numpy(data["w1"].T))
        model[0].bias.copy_(torch.from_numpy(data["b1"]))
        model[2].weight.copy_(torch.from_numpy(data["w2"].T))
        model[2].bias.copy_(torch.from_numpy(data["b2"]))
    return model


class Runner:
    whole_loop = False

    def __init__(self, params, data):
        self.params, self.data = params, data
        self.x, self.y = (
            torch.from_numpy(data["x_train"]),
            torch.from_numpy(data["y_train"]),
        )  # (N, 10), (N, 1)
        self.reset()

    def reset(self):
        self.model = build_model(self.data)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.params.lr)
        self.loss_fn = nn.MSELoss()

    def train_step(self) -> torch.Tensor:
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(self.x), self.y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def run(self, steps):
        losses = [self.train_step() for _ in range(steps)]
        return losses if self.params.record_series else []

    def compile(self, steps):
        raise NotImplementedError

    def sync(self, handle):
        pass  # CPU ops are synchronous

    def fetch(self, handle):
        return {"loss": torch.stack(handle).numpy()} if handle else {}

    def final_metrics(self):
        with torch.no_grad():
            train = self.loss_fn(self.model(self.x), self.y).item()
            test = self.loss_fn(
                self.model(torch.from_numpy(self.data["x_test"])), torch.from_numpy(self.data["y_test"])
            ).item()
        return {"final_loss": train, "test_mse": test}


def build_runner(mode, variant, params, data, threads=1):
    return Runner(params, data)
