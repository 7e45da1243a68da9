"""The sequence classifier in JAX: a hand-written LSTM cell run by lax.scan under jit, on the
global maximum (pad-max) or on power-of-two length buckets, unmasked (pad-batch) or with the state
frozen past each sequence's end (packed). Compilations counted by a trace-time side effect."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from spotdiff import parity
from spotdiff.backends.jax import weights
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.sequences import spec as neutral

FRAMEWORK = "jax"


def lstm_scan(params, x: jax.Array, mask: jax.Array | None):
    """Run the LSTM over x (B, T, E); returns (outputs (T, B, H), final h (B, H)).
    With a mask (B, T), padded steps keep the previous state, so final h is the last real one."""
    batch, hidden = x.shape[0], params["lstm_recurrent"].shape[0]
    inputs = jnp.swapaxes(x @ params["lstm_kernel"] + params["lstm_bias"], 0, 1)  # (T, B, 4H)
    steps = (inputs, jnp.swapaxes(mask, 0, 1)[..., None]) if mask is not None else (inputs,)

    def cell(carry, step):
        h, c = carry
        z = step[0] + h @ params["lstm_recurrent"]  # (B, 4H), gates i, f, g, o
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
        if mask is not None:
            h_new, c_new = jnp.where(step[1], h_new, h), jnp.where(step[1], c_new, c)
        return (h_new, c_new), h_new

    zeros = jnp.zeros((batch, hidden), x.dtype)
    (h, _), outputs = jax.lax.scan(cell, (zeros, zeros), steps)
    return outputs, h


def build_model(params, data, mode: str) -> dict[str, jax.Array]:
    # mode: unused, the forward pass packs or masks (Keras builds its masking into the model)
    return {k: jnp.asarray(v) for k, v in weights.lstm_params(neutral.neutral_weights(data)).items()}


def forward(model, tokens: jax.Array, lengths: jax.Array, masked: bool) -> jax.Array:
    x = model["embedding"][tokens]  # (B, T, E)
    if masked:
        _, last = lstm_scan(model, x, jnp.arange(tokens.shape[1])[None, :] < lengths[:, None])
    else:
        outputs, _ = lstm_scan(model, x, None)  # (T, B, H)
        last = outputs[lengths - 1, jnp.arange(tokens.shape[0])]  # (B, H)
    return last @ model["fc_kernel"] + model["fc_bias"]  # (B, 2)


def loss_fn(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_optimizer(model, params) -> tuple[optax.GradientTransformation, optax.OptState]:
    """Adam for `model` and its initial state (optax keeps the state apart from the optimizer)."""
    optimizer = optax.adam(**native_kwargs("jax", "adam", params.optimizer_hparams()))  # lr, eps if aligned
    return optimizer, optimizer.init(model)


def batch_arrays(data, split: str, index: np.ndarray, mode: str, max_len: int):
    lengths = data[f"len_{split}"][index]
    width = neutral.padded_width(FRAMEWORK, mode, lengths, max_len)
    return (jnp.asarray(data[f"x_{split}"][index, :width]), jnp.asarray(lengths.astype(np.int32)),
            jnp.asarray(data[f"y_{split}"][index].astype(np.int32)))


def evaluate(model, data, mode: str, params) -> float:
    predict = jax.jit(lambda m, t, n: forward(m, t, n, mode == "packed").argmax(1))
    correct = 0
    for index in neutral.epoch_batches(np.arange(len(data["y_test"])), 256):
        tokens, lengths, labels = batch_arrays(data, "test", index, mode, params.max_len)
        correct += int((predict(model, tokens, lengths) == labels).sum())
    return correct / len(data["y_test"])


def build_runner(model, optimizer, mode: str, max_len: int, return_grads: bool = False):
    """The jitted train step and a list whose length is its number of traces (= compilations:
    jit compiles once per new input shape, and each trace runs this Python body once). The step
    returns (model, opt_state, loss), plus the gradients with `return_grads` (the parity probe)."""
    # model, max_len: unused, the pure step takes the model each call and jit follows the shapes
    traces: list[tuple] = []

    def batch_loss(model, tokens, lengths, labels):
        return loss_fn(forward(model, tokens, lengths, mode == "packed"), labels)

    @jax.jit
    def step(model, opt_state, tokens, lengths, labels):
        traces.append(tokens.shape)
        loss, grads = jax.value_and_grad(batch_loss)(model, tokens, lengths, labels)
        updates, opt_state = optimizer.update(grads, opt_state, model)
        updated = optax.apply_updates(model, updates)
        return (updated, opt_state, loss, grads) if return_grads else (updated, opt_state, loss)

    return step, traces


def parity_probe(params, data, cell_dir: Path, mode: str) -> str:
    """Shared weights, the first batch, one SGD step through this mode's train step: the loss,
    every gradient and the parameters after the step, in the probe's (in, out) layout."""
    model = build_model(params, data, mode)
    optimizer = optax.sgd(params.lr)
    step, _ = build_runner(model, optimizer, mode, params.max_len, return_grads=True)
    probe = batch_arrays(data, "train", neutral.probe_batch(data, params.batch_size), mode, params.max_len)
    model, _, loss, grads = step(model, optimizer.init(model), *probe)
    return parity.save_probe(cell_dir, float(loss), jax.device_get(grads), jax.device_get(model))


def run(cell, params, data, cell_dir: Path):
    model = build_model(params, data, cell.mode)
    probe_rows = neutral.probe_batch(data, params.batch_size)
    probe = batch_arrays(data, "train", probe_rows, cell.mode, params.max_len)
    first_batch_loss = float(loss_fn(forward(model, *probe[:2], cell.mode == "packed"), probe[2]))
    optimizer, opt_state = make_optimizer(model, params)
    step, traces = build_runner(model, optimizer, cell.mode, params.max_len)
    epoch_s, train_loss = [], []
    for order in data["epoch_order"]:
        start = time.perf_counter()
        losses = []
        for index in neutral.epoch_batches(order, params.batch_size):
            model, opt_state, loss = step(
                model, opt_state, *batch_arrays(data, "train", index, cell.mode, params.max_len)
            )
            losses.append(loss)
        jax.block_until_ready(losses[-1])
        epoch_s.append(time.perf_counter() - start)
        train_loss += [float(loss) for loss in losses]
    metrics, series = neutral.finish(
        params,
        data,
        FRAMEWORK,
        cell.mode,
        epoch_s,
        train_loss,
        compilations=len(traces),
        test_accuracy=evaluate(model, data, cell.mode, params),
        first_batch_loss=first_batch_loss,
    )
    artifacts = {}
    if params.parity_probe:  # after the timed epochs, so that the first one stays cold
        artifacts["parity_probe"] = parity_probe(params, data, cell_dir, cell.mode)
    return metrics, series, artifacts


def record_steps(params, data, steps: int, dtype: str, align: dict, mode: str, variant: str) -> dict:
    """`spotdiff where`: `steps` Adam steps from the shared weights in `dtype` on the first batches
    of epoch 1, through this mode's jitted train step: every layer's output (the embedding and the
    LSTM's outputs (B, T, H) cut to the batch's longest sequence, the LSTM's outputs zero past each
    end; the state at the last real token (B, H); the logits), the loss, every gradient and every
    parameter after the update, in the probe's (in, out) layout. The layers are computed one by
    one from the step's starting weights, at the mode's padded width.

    align {"adam_eps": "hat"}: Adam written out as Keras computes it (Optax has no switch).
    align {"sparse_grads": "dense"}: the gradients are dense already, said explicitly.
    align {"adam_eps_value": eps}: that eps passed."""
    from spotdiff.backends.jax.optim import adam
    from spotdiff.tasks.shared import honoured, where_adam

    # variant: unused, the one variant is Adam
    jax.config.update("jax_enable_x64", True)  # float64 exists only with x64; float32 stays explicit
    model = {k: jnp.asarray(v, dtype) for k, v in build_model(params, data, mode).items()}
    optimizer = adam(native_kwargs("jax", "adam", where_adam(params.optimizer_hparams(), align)), align)
    opt_state = optimizer.init(model)
    step, _ = build_runner(model, optimizer, mode, params.max_len, return_grads=True)

    @jax.jit
    def layers(model, tokens, lengths):
        embedded = model["embedding"][tokens]  # (B, W, E)
        mask = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None] if mode == "packed" else None
        outputs = jnp.swapaxes(lstm_scan(model, embedded, mask)[0], 0, 1)  # (B, W, H)
        last = outputs[jnp.arange(tokens.shape[0]), lengths - 1]  # (B, H)
        return embedded, outputs, last, last @ model["fc_kernel"] + model["fc_bias"]

    tensors: dict[str, np.ndarray] = {}
    for index, rows in enumerate(neutral.where_batches(data, params.batch_size, steps)):
        tokens, lengths, labels = batch_arrays(data, "train", rows, mode, params.max_len)
        embedded, outputs, last, logits = jax.device_get(layers(model, tokens, lengths))
        longest = int(np.max(lengths))
        recorded = {"embedding": embedded[:, :longest], "lstm": neutral.where_lstm_outputs(outputs, lengths),
                    "last": last, "fc": logits}
        for name, value in recorded.items():
            tensors[f"{index}/forward/{name}"] = np.asarray(value)
        model, opt_state, loss, grads = step(model, opt_state, tokens, lengths, labels)
        tensors[f"{index}/loss"] = np.asarray(loss)
        for key, value in neutral.where_named(jax.device_get(grads)).items():
            tensors[f"{index}/grad/{key}"] = np.asarray(value)
        for key, value in neutral.where_named(jax.device_get(model)).items():
            tensors[f"{index}/param/{key}"] = np.asarray(value)
    return {"tensors": tensors, "layers": neutral.WHERE_LAYERS, "params": list(neutral.WHERE_PARAMS.values()),
            "optimizer": "adam", "aligned": honoured(align)}

