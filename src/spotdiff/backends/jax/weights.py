"""Neutral numpy weights <-> Flax NNX modules (HWIO conv kernels, (in, out) dense kernels, NHWC
flatten). Names are `<submodule>.weight|bias` for the module's `kernel` and `bias` params."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from spotdiff.backends.layouts import from_channels_last, to_channels_last


def load_neutral(model, neutral: dict[str, np.ndarray], flatten_layer: str | None = None,
                 flatten_chw: tuple[int, int, int] | None = None) -> None:
    native = to_channels_last(neutral, flatten_layer, flatten_chw)
    for name, value in native.items():
        layer, kind = name.rsplit(".", 1)
        param = getattr(getattr(model, layer), "kernel" if kind == "weight" else "bias")
        if tuple(param.value.shape) != value.shape:
            raise ValueError(f"{name}: model has {tuple(param.value.shape)}, weights have {value.shape}")
        param.value = jnp.asarray(value)


def to_neutral(named: dict[str, object], flatten_layer: str | None = None,
               flatten_chw: tuple[int, int, int] | None = None) -> dict[str, np.ndarray]:
    return from_channels_last({k: np.asarray(v) for k, v in named.items()}, flatten_layer, flatten_chw)


def named_params(tree, layers: list[str]) -> dict[str, object]:
    """`<layer>.weight|bias` -> the kernel/bias arrays of a module or of an nnx.State (e.g. grads)."""
    out = {}
    for layer in layers:
        sub = tree[layer]
        for kind, attr in (("weight", "kernel"), ("bias", "bias")):
            leaf = sub[attr]
            out[f"{layer}.{kind}"] = getattr(leaf, "value", leaf)
    return out


def lstm_params(
    neutral: dict[str, np.ndarray], names: tuple[str, str, str] = ("embedding", "lstm", "fc")
) -> dict[str, np.ndarray]:
    """Neutral (PyTorch) embedding -> LSTM -> linear weights as a flat dict in (in, out) layout:
    `embedding`, `lstm_kernel` (E, 4H), `lstm_recurrent` (H, 4H), `lstm_bias` (4H,) with gates
    i, f, g, o and the two biases summed, `fc_kernel` (H, 2), `fc_bias`."""
    from spotdiff.backends.layouts import lstm_torch_to_keras

    e, r, d = names
    kernel, recurrent, bias = lstm_torch_to_keras(
        *(neutral[f"{r}.{k}_l0"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    )
    return {
        "embedding": neutral[f"{e}.weight"],
        "lstm_kernel": kernel,
        "lstm_recurrent": recurrent,
        "lstm_bias": bias,
        "fc_kernel": neutral[f"{d}.weight"].T.copy(),
        "fc_bias": neutral[f"{d}.bias"],
    }
