"""Optimiser forms torch.optim has no switch for, written out (used by `spotdiff where` reruns)."""

from __future__ import annotations

import math

import torch


class AdamEpsHat(torch.optim.Optimizer):
    """Adam as Keras computes it (epsilon-hat): eps is added to sqrt(v) before the bias correction,
    which goes into the step size: p -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps).
    torch.optim.Adam adds eps to sqrt(v_hat) instead."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state.update(step=0, m=torch.zeros_like(param), v=torch.zeros_like(param))
                state["step"] += 1
                t = state["step"]
                alpha = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
                grad = param.grad
                state["m"].add_((grad - state["m"]) * (1 - beta1))
                state["v"].add_((grad * grad - state["v"]) * (1 - beta2))
                param.sub_(state["m"] * alpha / (state["v"].sqrt() + group["eps"]))


def aligned_adam(optimizer: torch.optim.Adam, align: dict) -> torch.optim.Optimizer:
    """`optimizer`, or with align {"adam_eps": "hat"} an AdamEpsHat with its lr, betas and eps."""
    if align.get("adam_eps") != "hat":
        return optimizer
    group = optimizer.param_groups[0]
    return AdamEpsHat(group["params"], lr=group["lr"], betas=group["betas"], eps=group["eps"])
