"""The GPT as Keras 3 layers, for every backend: the TensorFlow cells' model (tf_impl) and the Keras
cells' (keras_impl) are this one model.

keras.layers subclasses with one fused qkv Dense and keras.ops.dot_product_attention(is_causal=True)
instead of MultiHeadAttention, whose separate q/k/v kernels are not GPT-2's layout; a head tied to
the token embedding; Keras AdamW with global_clipnorm and decay on 2-D variables only. Only
`keras` is imported here: the backend is whatever KERAS_BACKEND says.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from spotdiff.hparams import native_kwargs
from spotdiff.tasks.gpt import spec as neutral


class CausalSelfAttention(layers.Layer):
    def __init__(self, n_embd: int, n_head: int, **kwargs):
        super().__init__(**kwargs)
        self.c_attn = layers.Dense(3 * n_embd)  # fused q, k, v
        self.c_proj = layers.Dense(n_embd)
        self.n_head = n_head

    def call(self, x):
        B, T, C = ops.shape(x)
        q, k, v = ops.split(self.c_attn(x), 3, axis=-1)  # (B, T, C) each
        q, k, v = (ops.reshape(t, (B, T, self.n_head, C // self.n_head)) for t in (q, k, v))  # (B, T, H, D)
        y = ops.dot_product_attention(q, k, v, is_causal=True)  # (B, T, H, D)
        return self.c_proj(ops.reshape(y, (B, T, C)))


class MLP(layers.Layer):
    def __init__(self, n_embd: int, gelu: str | None, **kwargs):
        super().__init__(**kwargs)
        self.c_fc = layers.Dense(4 * n_embd)
        self.c_proj = layers.Dense(n_embd)
        self.approximate = gelu == "tanh"  # native: keras.activations.gelu's default, the exact form

    def gelu(self, x):
        return keras.activations.gelu(x, approximate=self.approximate)

    def call(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(layers.Layer):
    def __init__(self, n_embd: int, n_head: int, ln_eps: float | None, gelu: str | None, **kwargs):
        super().__init__(**kwargs)
        eps = {} if ln_eps is None else {"epsilon": ln_eps}
        self.ln_1 = layers.LayerNormalization(**eps)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = layers.LayerNormalization(**eps)
        self.mlp = MLP(n_embd, gelu)

    def call(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(keras.Model):
    """Embeddings, blocks, final LayerNorm, head tied to the token embedding."""

    def __init__(self, params: neutral.GptParams, **kwargs):
        super().__init__(**kwargs)
        hp, e = params.layer_hparams(), params.n_embd
        self.wte = layers.Embedding(neutral.VOCAB_SIZE, e)
        self.wpe = layers.Embedding(params.block_size, e)
        self.h = [Block(e, params.n_head, hp["ln_eps"], hp["gelu"]) for _ in range(params.n_layer)]
        self.ln_f = layers.LayerNormalization(**({} if hp["ln_eps"] is None else {"epsilon": hp["ln_eps"]}))

    def embed(self, idx):  # (B, T) -> (B, T, C)
        return self.wte(idx) + self.wpe(ops.arange(ops.shape(idx)[1]))

    def head(self, x):  # (B, T, C) -> (B, T, V) logits in the variables' dtype (float32 under bf16)
        logits = ops.matmul(x, ops.transpose(ops.cast(self.wte.embeddings, x.dtype)))
        return ops.cast(logits, self.dtype_policy.variable_dtype)

    def call(self, idx):  # (B, T) -> (B, T, V) logits
        x = self.embed(idx)
        for block in self.h:
            x = block(x)
        return self.head(self.ln_f(x))


def build(params: neutral.GptParams, data: dict[str, np.ndarray]) -> GPT:
    """The model under the current dtype policy, its variables created and set to the shared weights."""
    model = GPT(params)
    model(np.zeros((1, params.block_size), np.int32))  # creates the variables
    shared = neutral.neutral_weights(data)
    for name, (variable, transposed) in named_variables(model).items():
        variable.assign(shared[name].T if transposed else shared[name])
    return model


def named_variables(model: GPT) -> dict[str, tuple[Any, bool]]:
    """nanoGPT's name -> (Keras variable, whether its layout is the transpose of the neutral one)."""
    out = {"transformer.wte.weight": (model.wte.embeddings, False),
           "transformer.wpe.weight": (model.wpe.embeddings, False)}

    def norm(prefix, layer):
        out[prefix + ".weight"], out[prefix + ".bias"] = (layer.gamma, False), (layer.beta, False)

    def dense(prefix, layer):
        out[prefix + ".weight"], out[prefix + ".bias"] = (layer.kernel, True), (layer.bias, False)

    for i, block in enumerate(model.h):
        h = f"transformer.h.{i}."
        norm(h + "ln_1", block.ln_1)
        dense(h + "attn.c_attn", block.attn.c_attn)
        dense(h + "attn.c_proj", block.attn.c_proj)
        norm(h + "ln_2", block.ln_2)
        dense(h + "mlp.c_fc", block.mlp.c_fc)
        dense(h + "mlp.c_proj", block.mlp.c_proj)
    norm("transformer.ln_f", model.ln_f)
    return out


def to_neutral(model: GPT, values: list | None = None) -> dict[str, np.ndarray]:
    """The variables (or `values`, one per trainable variable in order, e.g. gradients) as numpy
    in the neutral layout ((out, in) kernels)."""
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    out = {}
    for name, (variable, transposed) in named_variables(model).items():
        value = ops.convert_to_numpy(variable if values is None else values[index[id(variable)]])
        out[name] = value.T if transposed else value
    return out


def recorded_forward(model: GPT, idx) -> tuple[Any, dict[str, Any]]:
    """The forward pass one layer at a time, for `spotdiff where`: (logits, {layer: output}) with
    the layer names of `neutral.where_layers`."""
    outputs = {"transformer.embed": model.embed(idx)}
    x = outputs["transformer.embed"]
    for i, block in enumerate(model.h):
        h = f"transformer.h.{i}"
        outputs[f"{h}.ln_1"] = block.ln_1(x)
        outputs[f"{h}.attn"] = block.attn(outputs[f"{h}.ln_1"])
        x = x + outputs[f"{h}.attn"]
        outputs[f"{h}.ln_2"] = block.ln_2(x)
        outputs[f"{h}.mlp.c_fc"] = block.mlp.c_fc(outputs[f"{h}.ln_2"])
        outputs[f"{h}.mlp.gelu"] = block.mlp.gelu(outputs[f"{h}.mlp.c_fc"])
        outputs[f"{h}.mlp"] = block.mlp.c_proj(outputs[f"{h}.mlp.gelu"])
        x = outputs[h] = x + outputs[f"{h}.mlp"]
    outputs["transformer.ln_f"] = model.ln_f(x)
    outputs["lm_head"] = model.head(outputs["transformer.ln_f"])
    return outputs["lm_head"], outputs


def mean_cross_entropy(logits, targets):
    """Mean next-byte cross-entropy of (B, T, V) logits and (B, T) targets, in the logits' dtype."""
    return ops.mean(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))


class AdamWEpsilonOnVHat(keras.optimizers.AdamW):
    """Keras AdamW with epsilon added to sqrt(v_hat), after the bias correction, as PyTorch and
    Optax add it. Keras adds it to sqrt(v) before (its epsilon-hat form, whose effective epsilon
    is eps / sqrt(1 - beta_2^t)): an explicit epsilon means the same in every framework."""

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr, g = ops.cast(learning_rate, dtype), ops.cast(gradient, dtype)
        t = ops.cast(self.iterations + 1, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(g, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(g), v), 1 - self.beta_2))
        m_hat = ops.divide(m, 1 - ops.power(ops.cast(self.beta_1, dtype), t))
        v_hat = ops.divide(v, 1 - ops.power(ops.cast(self.beta_2, dtype), t))
        self.assign_sub(variable, ops.divide(ops.multiply(lr, m_hat), ops.add(ops.sqrt(v_hat), self.epsilon)))


def adamw(model: GPT, params: neutral.GptParams) -> keras.optimizers.Optimizer:
    """Keras AdamW clipping the global norm, weight decay excluded from all but 2-D variables; an
    explicit epsilon (aligned, or `--set adam_eps`) is added where PyTorch and Optax add it."""
    kwargs = native_kwargs("tensorflow", "adamw", params.optimizer_hparams())  # Keras' names
    kind = AdamWEpsilonOnVHat if "epsilon" in kwargs else keras.optimizers.AdamW
    optimizer = kind(global_clipnorm=params.grad_clip, **kwargs)
    optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if len(v.shape) != 2])
    return optimizer


def record(params: neutral.GptParams, data: dict[str, np.ndarray], steps: int, dtype: str,
           align: dict[str, Any], grad_fn) -> dict[str, Any]:
    """`record_steps` of a Keras cell on any backend: `steps` AdamW steps from the shared weights in
    `dtype`, every layer's output, the loss, every gradient (before clipping) and every parameter
    after the update, in the neutral layout. `grad_fn(model, x, y) -> (loss, outputs, grads)` is
    the backend's autodiff over `recorded_forward` (grads: one per trainable variable)."""
    chosen, honoured = neutral.where_params(params, align)
    # Keras layers take the global dtype *policy*, optimiser variables floatx: set both, then restore.
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        model = build(chosen, data)
        optimizer = adamw(model, chosen)
        optimizer.build(model.trainable_variables)
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)
    tensors: dict[str, np.ndarray] = {}
    for step, (x, y) in enumerate(neutral.where_batches(data, params, steps)):
        loss, outputs, grads = grad_fn(model, x, y)
        for name, value in outputs.items():
            tensors[f"{step}/forward/{name}"] = ops.convert_to_numpy(value)
        tensors[f"{step}/loss"] = ops.convert_to_numpy(loss)
        for name, value in to_neutral(model, grads).items():
            tensors[f"{step}/grad/{name}"] = value
        optimizer.apply(grads, model.trainable_variables)
        for name, value in to_neutral(model).items():
            tensors[f"{step}/param/{name}"] = value
    return {"tensors": tensors, "layers": neutral.where_layers(params),
            "params": list(named_variables(model)), "optimizer": "adamw", "aligned": honoured}
