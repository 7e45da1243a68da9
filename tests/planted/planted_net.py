"""The planted task's network, optimiser and recorder in JAX (test-only; see spec.py).

One training step (forward, loss, gradients, update, running statistics) is ONE jitted function,
and the conventions are traced numbers, not static arguments: a recorder compiles once per dtype
however many alignments it reruns (a compile costs seconds on a loaded machine, a step microseconds).
"""

from __future__ import annotations

from functools import partial
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


def as_numbers(c: dict[str, Any]) -> dict[str, float]:
    """The conventions as the traced numbers `forward` and `train_step` read."""
    return {"chw": float(c["flatten_order"] == "chw"), "tf_pad": float(c["same_padding"] == "tf"),
            "bn_eps": float(c["batchnorm_eps"]), "ln_eps": float(c["layernorm_eps"]),
            "bn_new": 0.1 if c["batchnorm_momentum"] == "new-weight-0.1" else 0.9,
            "reset_after": float(bool(c["gru_reset_after"])), "inside": float(c["rmsprop_eps"] == "inside")}


def forward(p: dict[str, jax.Array], x: jax.Array, labels: jax.Array, c: dict[str, jax.Array]):
    """(loss, (layer outputs, batch mean, batch variance)); x (B, 1, 8, 8) NCHW."""
    xp = jnp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))  # TF/Flax SAME pads (0, 1); symmetric (1, 1)
    tf_conv = jax.lax.conv_general_dilated(xp[:, :, 1:, 1:], p["conv.weight"], (2, 2), "VALID")
    sym_conv = jax.lax.conv_general_dilated(xp[:, :, :-1, :-1], p["conv.weight"], (2, 2), "VALID")
    conv = jnp.where(c["tf_pad"] > 0, tf_conv, sym_conv) + p["conv.bias"][None, :, None, None]  # (B,2,4,4)
    mean, var = conv.mean(axis=(0, 2, 3)), conv.var(axis=(0, 2, 3))  # (2,), biased
    norm = (conv - mean[None, :, None, None]) / jnp.sqrt(var[None, :, None, None] + c["bn_eps"])
    bn = norm * p["bn.weight"][None, :, None, None] + p["bn.bias"][None, :, None, None]  # (B, 2, 4, 4)
    relu = jnp.maximum(bn, 0)
    flat = jnp.where(c["chw"] > 0, relu.reshape(x.shape[0], -1),
                     relu.transpose(0, 2, 3, 1).reshape(x.shape[0], -1))  # (B, 32)
    dense = flat @ p["dense.weight"].T + p["dense.bias"]  # (B, 8)
    centred = dense - dense.mean(-1, keepdims=True)
    ln = centred / jnp.sqrt((centred**2).mean(-1, keepdims=True) + c["ln_eps"])
    ln = ln * p["ln.weight"] + p["ln.bias"]
    h = jnp.zeros((x.shape[0], 4), x.dtype)
    for t in range(2):  # gates r, z, n as PyTorch
        gi = ln[:, 4 * t:4 * t + 4] @ p["gru.weight_ih"].T + p["gru.bias_ih"]  # (B, 12)
        gh = h @ p["gru.weight_hh"].T + p["gru.bias_hh"]
        r, z = jax.nn.sigmoid(gi[:, :4] + gh[:, :4]), jax.nn.sigmoid(gi[:, 4:8] + gh[:, 4:8])
        after = jnp.tanh(gi[:, 8:] + r * gh[:, 8:])
        before = jnp.tanh(gi[:, 8:] + (r * h) @ p["gru.weight_hh"][8:].T + p["gru.bias_hh"][8:])
        h = (1 - z) * jnp.where(c["reset_after"] > 0, after, before) + z * h
    logits = h @ p["out.weight"].T + p["out.bias"]  # (B, 3)
    loss = -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(x.shape[0]), labels])
    outputs = {"conv": conv, "bn": bn, "relu": relu, "flatten": flat, "dense": dense, "ln": ln, "gru": h,
               "out": logits}
    return loss, (outputs, mean, var * conv.size / mean.size / (conv.size / mean.size - 1))


@partial(jax.jit, static_argnames=("optimizer",))
def train_step(p, buffers, square, x, labels, c, lr, optimizer: str):
    """One step: (loss, layer outputs, gradients, new params, new running stats, new RMSprop state)."""
    (loss, (outputs, mean, var)), grads = jax.value_and_grad(forward, has_aux=True)(p, x, labels, c)
    if optimizer == "sgd":
        new = {k: p[k] - lr * grads[k] for k in p}
    else:
        square = {k: 0.9 * square[k] + 0.1 * grads[k] * grads[k] for k in p}
        den = {k: jnp.where(c["inside"] > 0, jnp.sqrt(square[k] + 1e-7), jnp.sqrt(square[k]) + 1e-7)
               for k in p}
        new = {k: p[k] - lr * grads[k] / den[k] for k in p}
    stats = {"bn.running_mean": mean, "bn.running_var": var}
    buffers = {k: (1 - c["bn_new"]) * buffers[k] + c["bn_new"] * stats[k] for k in buffers}
    return loss, outputs, grads, new, buffers, square


def record(framework: str, params: Any, data: dict[str, np.ndarray], steps: int, dtype: str,
           align: dict[str, Any]) -> dict[str, Any]:
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_disable_most_optimizations", True)  # a third less compile time, same math
    chosen, honoured = conventions(framework, params.plant, align)
    c = {k: jnp.asarray(v, dtype) for k, v in as_numbers(chosen).items()}
    p = {k[2:]: jnp.asarray(v, dtype) for k, v in data.items() if k.startswith("w:")}
    names = sorted(p)
    x, labels = jnp.asarray(data["x"], dtype), jnp.asarray(data["y"])
    buffers = {"bn.running_mean": jnp.zeros(2, dtype), "bn.running_var": jnp.ones(2, dtype)}
    square = {k: jnp.zeros_like(v) for k, v in p.items()}
    lr = jnp.asarray(params.lr, dtype)
    tensors: dict[str, np.ndarray] = {}
    for step in range(steps):
        loss, outputs, grads, p, buffers, square = train_step(p, buffers, square, x, labels, c, lr,
                                                              optimizer=params.optimizer)
        for name, value in outputs.items():
            tensors[f"{step}/forward/{name}"] = np.asarray(value)
        tensors[f"{step}/loss"] = np.asarray(loss)
        for name in names:
            tensors[f"{step}/grad/{name}"] = np.asarray(grads[name])
            tensors[f"{step}/param/{name}"] = np.asarray(p[name])
        for key in BUFFERS:
            tensors[f"{step}/param/{key}"] = np.asarray(buffers[key])
    return {"tensors": tensors, "layers": LAYERS, "params": names, "buffers": BUFFERS,
            "optimizer": params.optimizer, "aligned": honoured}
