"""The planted task's network, optimiser and recorder in JAX (test-only; see spec.py)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Each framework's conventions here; `plant` flips one in one framework, `align` sets it back.
NEUTRAL = {"flatten_order": "chw", "same_padding": "tf", "batchnorm_eps": 1e-5,
           "batchnorm_momentum": "new-weight-0.1", "layernorm_eps": 1e-5, "gru_reset_after": True,
           "rmsprop_eps": "inside"}
PLANTED = {"flatten_order": "hwc", "same_padding": "symmetric", "batchnorm_eps": 1e-3,
           "batchnorm_momentum": "old-weight-0.1", "layernorm_eps": 1e-3, "gru_reset_after": False,
           "rmsprop_eps": "outside"}
LAYERS = [("conv", "conv2d"), ("bn", "batchnorm"), ("relu", "relu"), ("flatten", "flatten"),
          ("dense", "dense"), ("ln", "layernorm"), ("gru", "gru"), ("out", "dense")]
BUFFERS = ["bn.running_mean", "bn.running_var"]


def conventions(framework: str, plant: str, align: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    chosen = dict(NEUTRAL)
    what, _, where = plant.partition(":")
    if what and where == framework:
        chosen[what] = PLANTED[what]
    honoured = [k for k in align if k in chosen]
    chosen.update({k: v for k, v in align.items() if k in chosen})
    return chosen, honoured


def forward(p: dict[str, jax.Array], x: jax.Array, labels: jax.Array, frozen: tuple):
    """(loss, (layer outputs, batch mean, batch variance)); x (B, 1, 8, 8) NCHW."""
    c = dict(frozen)
    pad = ((0, 1), (0, 1)) if c["same_padding"] == "tf" else ((1, 1), (1, 1))
    conv = jax.lax.conv_general_dilated(x, p["conv.weight"], (2, 2), pad)
    conv = conv + p["conv.bias"][None, :, None, None]  # (B, 2, 4, 4)
    mean, var = conv.mean(axis=(0, 2, 3)), conv.var(axis=(0, 2, 3))  # (2,), biased
    norm = (conv - mean[None, :, None, None]) / jnp.sqrt(var[None, :, None, None] + c["batchnorm_eps"])
    bn = norm * p["bn.weight"][None, :, None, None] + p["bn.bias"][None, :, None, None]  # (B, 2, 4, 4)
    relu = jnp.maximum(bn, 0)
    order = relu if c["flatten_order"] == "chw" else relu.transpose(0, 2, 3, 1)
    flat = order.reshape(x.shape[0], -1)  # (B, 32)
    dense = flat @ p["dense.weight"].T + p["dense.bias"]  # (B, 8)
    centred = dense - dense.mean(-1, keepdims=True)
    ln = centred / jnp.sqrt((centred**2).mean(-1, keepdims=True) + c["layernorm_eps"])
    ln = ln * p["ln.weight"] + p["ln.bias"]
    h = jnp.zeros((x.shape[0], 4), x.dtype)
    for t in range(2):  # gates r, z, n as PyTorch
        gi = ln[:, 4 * t:4 * t + 4] @ p["gru.weight_ih"].T + p["gru.bias_ih"]  # (B, 12)
        gh = h @ p["gru.weight_hh"].T + p["gru.bias_hh"]
        r, z = jax.nn.sigmoid(gi[:, :4] + gh[:, :4]), jax.nn.sigmoid(gi[:, 4:8] + gh[:, 4:8])
        if c["gru_reset_after"]:
            n = jnp.tanh(gi[:, 8:] + r * gh[:, 8:])
        else:
            n = jnp.tanh(gi[:, 8:] + (r * h) @ p["gru.weight_hh"][8:].T + p["gru.bias_hh"][8:])
        h = (1 - z) * n + z * h
    logits = h @ p["out.weight"].T + p["out.bias"]  # (B, 3)
    loss = -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(x.shape[0]), labels])
    outputs = {"conv": conv, "bn": bn, "relu": relu, "flatten": flat, "dense": dense, "ln": ln, "gru": h,
               "out": logits}
    return loss, (outputs, mean, var * conv.size / mean.size / (conv.size / mean.size - 1))


def record(framework: str, params: Any, data: dict[str, np.ndarray], steps: int, dtype: str,
           align: dict[str, Any]) -> dict[str, Any]:
    jax.config.update("jax_enable_x64", True)
    c, honoured = conventions(framework, params.plant, align)
    p = {k[2:]: jnp.asarray(v, dtype) for k, v in data.items() if k.startswith("w:")}
    names = sorted(p)
    x, labels = jnp.asarray(data["x"], dtype), jnp.asarray(data["y"])
    buffers = {"bn.running_mean": jnp.zeros(2, dtype), "bn.running_var": jnp.ones(2, dtype)}
    square = {k: jnp.zeros_like(v) for k, v in p.items()}
    tensors: dict[str, np.ndarray] = {}
    step_fn = jax.jit(jax.value_and_grad(forward, has_aux=True), static_argnums=3)
    for step in range(steps):
        (loss, (outputs, mean, var)), grads = step_fn(p, x, labels, tuple(sorted(c.items())))
        for name, value in outputs.items():
            tensors[f"{step}/forward/{name}"] = np.asarray(value)
        tensors[f"{step}/loss"] = np.asarray(loss)
        for name in names:
            g = grads[name]
            tensors[f"{step}/grad/{name}"] = np.asarray(g)
            if params.optimizer == "sgd":
                p[name] = p[name] - params.lr * g
            else:
                square[name] = 0.9 * square[name] + 0.1 * g * g
                den = (jnp.sqrt(square[name] + 1e-7) if c["rmsprop_eps"] == "inside"
                       else jnp.sqrt(square[name]) + 1e-7)
                p[name] = p[name] - params.lr * g / den
            tensors[f"{step}/param/{name}"] = np.asarray(p[name])
        new = 0.1 if c["batchnorm_momentum"] == "new-weight-0.1" else 0.9
        for key, stat in (("bn.running_mean", mean), ("bn.running_var", var)):
            buffers[key] = (1 - new) * buffers[key] + new * stat
            tensors[f"{step}/param/{key}"] = np.asarray(buffers[key])
    return {"tensors": tensors, "layers": LAYERS, "params": names, "buffers": BUFFERS,
            "optimizer": params.optimizer, "aligned": honoured}
