"""The two CNNs of the post, described once: layer shapes, parameter counts, FLOPs, shared init.

Neutral weight layout (PyTorch's): conv kernels (out, in, kh, kw), dense kernels (out, in), and the
flatten after the last convolution in (C, H, W) order. backends/<fw>/weights.py converts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODELS = ("pytorch-examples", "tf-layers")


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str  # conv | dense
    shape: tuple[int, ...]  # neutral kernel shape
    out_hw: int = 0  # conv: output height (= width)


# Layers with weights, in order. Expected parameter counts are written once, here.
ARCHITECTURES: dict[str, tuple[Layer, ...]] = {
    # conv 1->10 k5 (28->24), pool 2 (->12), relu, conv 10->20 k5 (->8), dropout2d, pool 2 (->4),
    # relu, flatten 320, fc 320->50, relu, dropout, fc 50->10
    "pytorch-examples": (
        Layer("conv1", "conv", (10, 1, 5, 5), 24),
        Layer("conv2", "conv", (20, 10, 5, 5), 8),
        Layer("fc1", "dense", (50, 320)),
        Layer("fc2", "dense", (10, 50)),
    ),
    # conv 32 k5 same (28), pool 2 (14), conv 64 k5 same (14), pool 2 (7), dense 1024, dropout 0.4, dense 10
    "tf-layers": (
        Layer("conv1", "conv", (32, 1, 5, 5), 28),
        Layer("conv2", "conv", (64, 32, 5, 5), 14),
        Layer("fc1", "dense", (1024, 7 * 7 * 64)),
        Layer("fc2", "dense", (10, 1024)),
    ),
}
PARAM_COUNTS = {"pytorch-examples": 21_840, "tf-layers": 3_274_634}
FLATTEN_CHW = {"pytorch-examples": (20, 4, 4), "tf-layers": (64, 7, 7)}  # shape before the first dense


def param_count(model: str) -> int:
    return sum(int(np.prod(layer.shape)) + layer.shape[0] for layer in ARCHITECTURES[model])


def forward_flops_per_image(model: str) -> int:
    """Multiply-adds x 2 of the convolutions and dense layers (pooling and activations left out)."""
    flops = 0
    for layer in ARCHITECTURES[model]:
        if layer.kind == "conv":
            out_c, in_c, kh, kw = layer.shape
            flops += 2 * out_c * in_c * kh * kw * layer.out_hw * layer.out_hw
        else:
            flops += 2 * layer.shape[0] * layer.shape[1]
    return flops


def training_flops_per_image(model: str) -> int:
    """Forward + backward, by the usual convention backward = 2 x forward."""
    return 3 * forward_flops_per_image(model)


def shared_weights(model: str, seed: int) -> dict[str, np.ndarray]:
    """One seeded set of float32 weights in the neutral layout: U(±1/sqrt(fan_in)) for kernels and
    biases (PyTorch's default bound), so no framework starts from its own initialiser."""
    rng = np.random.default_rng(seed + 1_000_003)
    weights = {}
    for layer in ARCHITECTURES[model]:
        fan_in = int(np.prod(layer.shape[1:]))
        bound = 1.0 / np.sqrt(fan_in)
        weights[f"{layer.name}.weight"] = rng.uniform(-bound, bound, layer.shape).astype(np.float32)
        weights[f"{layer.name}.bias"] = rng.uniform(-bound, bound, layer.shape[0]).astype(np.float32)
    return weights


# What `spotdiff where` records, in forward order: (name, kind), the same in every framework.
# Activations are recorded NCHW and the flatten in (C, H, W) order, the neutral layout.
WHERE_LAYERS: dict[str, list[tuple[str, str]]] = {
    "pytorch-examples": [("conv1", "conv2d"), ("pool1", "maxpool"), ("relu1", "relu"), ("conv2", "conv2d"),
                         ("pool2", "maxpool"), ("relu2", "relu"), ("flatten", "flatten"), ("fc1", "dense"),
                         ("relu3", "relu"), ("fc2", "dense")],
    "tf-layers": [("conv1", "conv2d"), ("relu1", "relu"), ("pool1", "maxpool"), ("conv2", "conv2d"),
                  ("relu2", "relu"), ("pool2", "maxpool"), ("flatten", "flatten"), ("fc1", "dense"),
                  ("relu3", "relu"), ("fc2", "dense")],
}


def where_batches(data: dict[str, np.ndarray], batch_size: int,
                  steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The batches `spotdiff where` trains on: the first `steps` of epoch 1, (B, 28, 28), (B,)."""
    order = data["epoch_order"][0]
    picks = [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]
    return [(data["x_train"][p], data["y_train"][p]) for p in picks if len(p)]
