"""Neutral (PyTorch-layout) numpy weights <-> channels-last layouts, in numpy only.

Neutral: conv kernels (out, in, kh, kw) = OIHW; dense kernels (out, in); the flatten after the last
convolution in (C, H, W) order. Channels-last frameworks (Keras, Flax) keep conv kernels HWIO,
dense kernels (in, out), and flatten in (H, W, C) order, so the rows of the first dense kernel after
a convolution must be permuted as well as transposed.
"""

from __future__ import annotations

import numpy as np


def conv_oihw_to_hwio(kernel: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(kernel.transpose(2, 3, 1, 0))  # (O, I, H, W) -> (H, W, I, O)


def conv_hwio_to_oihw(kernel: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def dense_to_in_out(kernel: np.ndarray, flatten_chw: tuple[int, int, int] | None = None) -> np.ndarray:
    """(out, in) -> (in, out); with `flatten_chw`, rows reordered from (C, H, W) to (H, W, C)."""
    if flatten_chw is None:
        return np.ascontiguousarray(kernel.T)
    c, h, w = flatten_chw
    out = kernel.shape[0]
    return np.ascontiguousarray(kernel.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out))


def dense_from_in_out(kernel: np.ndarray, flatten_chw: tuple[int, int, int] | None = None) -> np.ndarray:
    """The inverse of `dense_to_in_out`."""
    if flatten_chw is None:
        return np.ascontiguousarray(kernel.T)
    c, h, w = flatten_chw
    out = kernel.shape[1]
    return np.ascontiguousarray(kernel.reshape(h, w, c, out).transpose(3, 2, 0, 1).reshape(out, c * h * w))


def to_channels_last(
    neutral: dict[str, np.ndarray], flatten_layer: str | None, flatten_chw
) -> dict[str, np.ndarray]:
    """Every `<layer>.weight` converted (conv 4-D, dense 2-D); biases unchanged."""
    out = {}
    for name, value in neutral.items():
        layer = name.rsplit(".", 1)[0]
        if name.endswith(".weight") and value.ndim == 4:
            out[name] = conv_oihw_to_hwio(value)
        elif name.endswith(".weight") and value.ndim == 2:
            out[name] = dense_to_in_out(value, flatten_chw if layer == flatten_layer else None)
        else:
            out[name] = value
    return out


def from_channels_last(
    native: dict[str, np.ndarray], flatten_layer: str | None, flatten_chw
) -> dict[str, np.ndarray]:
    """The inverse of `to_channels_last` (for gradients and trained weights)."""
    out = {}
    for name, value in native.items():
        layer = name.rsplit(".", 1)[0]
        if name.endswith(".weight") and value.ndim == 4:
            out[name] = conv_hwio_to_oihw(value)
        elif name.endswith(".weight") and value.ndim == 2:
            out[name] = dense_from_in_out(value, flatten_chw if layer == flatten_layer else None)
        else:
            out[name] = value
    return out


def lstm_torch_to_keras(
    weight_ih: np.ndarray, weight_hh: np.ndarray, bias_ih: np.ndarray, bias_hh: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch's LSTM (W_ih (4H, E), W_hh (4H, H), two biases) -> Keras' (kernel (E, 4H),
    recurrent_kernel (H, 4H), one bias). Both order the gates i, f, g(=c), o; only the layout and
    the bias count differ, and the two biases are only ever added."""
    return weight_ih.T.copy(), weight_hh.T.copy(), (bias_ih + bias_hh).astype(weight_ih.dtype)


def lstm_keras_to_torch(
    kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The inverse of lstm_torch_to_keras: the summed bias goes to bias_ih, bias_hh is zero."""
    return kernel.T.copy(), recurrent_kernel.T.copy(), bias.copy(), np.zeros_like(bias)
