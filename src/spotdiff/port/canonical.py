"""The neutral layouts of `spotdiff port`, per layer kind, and the conversions to and from the
channels-last frameworks (numpy only; the conv and dense rules are `backends/layouts.py`'s).

Canonical = PyTorch's layout (see the table in `spotdiff.port`). Keras and Flax keep conv kernels
HWIO, dense kernels (in, out), feature maps NHWC and flatten in (H, W, C) order; Keras' GRU orders
its gates z, r, h (PyTorch r, z, n) and keeps one (2, 3u) bias (reset_after=True) or one (3u,) bias
(reset_after=False); Keras' and Flax's multi-head attention keep kernels (d, heads, head_dim) and
the output kernel (heads, head_dim, d). Every function here is linear in its arrays, so the same
one converts parameters, gradients and updated values.
"""

from __future__ import annotations

import numpy as np

from spotdiff.backends.layouts import conv_hwio_to_oihw, conv_oihw_to_hwio, dense_from_in_out, dense_to_in_out

KINDS = ("dense", "conv2d", "batchnorm", "layernorm", "embedding", "gru", "attention")
BUFFERS = {"batchnorm": ("running_mean", "running_var")}  # updated in training, never differentiated
ATTENTION = ("q", "k", "v")


def dense_to_native(weight: np.ndarray, flatten_chw: tuple[int, int, int] | None = None) -> np.ndarray:
    """(out, in) -> (in, out); rows reordered (C, H, W) -> (H, W, C) after a channels-last flatten."""
    return dense_to_in_out(weight, flatten_chw)


def dense_from_native(kernel: np.ndarray, flatten_chw: tuple[int, int, int] | None = None) -> np.ndarray:
    return dense_from_in_out(kernel, flatten_chw)


def conv_to_native(weight: np.ndarray) -> np.ndarray:
    return conv_oihw_to_hwio(weight)  # (O, I, kh, kw) -> (kh, kw, I, O)


def conv_from_native(kernel: np.ndarray) -> np.ndarray:
    return conv_hwio_to_oihw(kernel)


def _swap_rz(blocks: np.ndarray, axis: int) -> np.ndarray:
    """Gate blocks r, z, n <-> z, r, n along `axis` (its own inverse)."""
    first, second, third = np.split(blocks, 3, axis=axis)
    return np.ascontiguousarray(np.concatenate([second, first, third], axis=axis))


def gru_to_keras(p: dict[str, np.ndarray], reset_after: bool) -> list[np.ndarray]:
    """Canonical GRU -> Keras [kernel (in, 3u), recurrent_kernel (u, 3u), bias]. With
    reset_after=False Keras has one bias: the two are summed, which is exact for the z and r gates
    only (PyTorch applies the reset gate to the recurrent bias of n; that form cannot)."""
    kernel, recurrent = _swap_rz(p["weight_ih"].T, 1), _swap_rz(p["weight_hh"].T, 1)
    b_in, b_rec = _swap_rz(p["bias_ih"], 0), _swap_rz(p["bias_hh"], 0)
    bias = np.stack([b_in, b_rec]) if reset_after else b_in + b_rec
    return [kernel, recurrent, bias]


def gru_from_keras(kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray) -> dict[str, np.ndarray]:
    """The inverse of `gru_to_keras`; a single (3u,) bias is all input bias (recurrent bias 0)."""
    both = bias if bias.ndim == 2 else np.stack([bias, np.zeros_like(bias)])
    return {
        "weight_ih": np.ascontiguousarray(_swap_rz(kernel, 1).T),
        "weight_hh": np.ascontiguousarray(_swap_rz(recurrent, 1).T),
        "bias_ih": _swap_rz(both[0], 0),
        "bias_hh": _swap_rz(both[1], 0),
    }


def attention_to_native(p: dict[str, np.ndarray], heads: int) -> dict[str, np.ndarray]:
    """Canonical q/k/v/out (d_out, d_in) matrices -> Keras/Flax multi-head kernels:
    `q_kernel` (d, heads, head_dim), `q_bias` (heads, head_dim), ..., `out_kernel` (heads, head_dim, d)."""
    out = {}
    for name in ATTENTION:
        weight = p[f"{name}_weight"]  # (heads * head_dim, d)
        head_dim = weight.shape[0] // heads
        out[f"{name}_kernel"] = np.ascontiguousarray(weight.T.reshape(weight.shape[1], heads, head_dim))
        out[f"{name}_bias"] = p[f"{name}_bias"].reshape(heads, head_dim)
    weight = p["out_weight"]  # (d, heads * head_dim)
    out["out_kernel"] = np.ascontiguousarray(
        weight.T.reshape(heads, weight.shape[1] // heads, weight.shape[0])
    )
    out["out_bias"] = p["out_bias"]
    return out


def attention_from_native(native: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of `attention_to_native`."""
    out = {}
    for name in ATTENTION:
        kernel = native[f"{name}_kernel"]  # (d, heads, head_dim)
        out[f"{name}_weight"] = np.ascontiguousarray(kernel.reshape(kernel.shape[0], -1).T)
        out[f"{name}_bias"] = native[f"{name}_bias"].reshape(-1)
    kernel = native["out_kernel"]  # (heads, head_dim, d)
    out["out_weight"] = np.ascontiguousarray(kernel.reshape(-1, kernel.shape[-1]).T)
    out["out_bias"] = native["out_bias"]
    return out


def feature_map_to_canonical(value: np.ndarray) -> np.ndarray:
    """A channels-last activation (B, H, W, C) -> (B, C, H, W); other ranks unchanged."""
    return np.ascontiguousarray(value.transpose(0, 3, 1, 2)) if value.ndim == 4 else value


def feature_map_to_native(value: np.ndarray) -> np.ndarray:
    """(B, C, H, W) -> (B, H, W, C): a source-layout input for a channels-last model."""
    return np.ascontiguousarray(value.transpose(0, 2, 3, 1)) if value.ndim == 4 else value


def flatten_to_canonical(value: np.ndarray, hwc: tuple[int, int, int]) -> np.ndarray:
    """A channels-last flatten output (B, H*W*C) -> PyTorch's (C, H, W) order."""
    h, w, c = hwc
    return np.ascontiguousarray(value.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(value.shape[0], -1))


def recurrent_to_canonical(value: np.ndarray) -> np.ndarray:
    """A recurrent layer's output -> its last hidden state (B, u): Keras' return_sequences=False
    form; a (B, T, u) sequence gives its last step."""
    return value[:, -1] if value.ndim == 3 else value


def shapes(params: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(value.shape) for name, value in params.items()}
