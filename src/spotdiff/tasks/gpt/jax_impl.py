"""The GPT in JAX, as Flax's NNX examples write it: nnx.Module blocks, jax.nn.dot_product_attention
(is_causal=True), the head tied through `wte.attend`, Optax AdamW (decay masked to 2-D weights)
after global-norm clipping, an nnx.jit train step run through nnx.cached_partial (Flax's fast path
for small models: the graph is traversed once, not on every call). bf16: every module computes in
bfloat16 (`dtype`) and keeps float32 parameters (`param_dtype`), the Flax way."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from spotdiff.backends.jax import env
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.gpt import loop
from spotdiff.tasks.gpt import spec as neutral


class CausalSelfAttention(nnx.Module):
    def __init__(self, n_embd: int, n_head: int, dtype, rngs: nnx.Rngs):
        self.c_attn = nnx.Linear(n_embd, 3 * n_embd, dtype=dtype, rngs=rngs)  # fused q, k, v
        self.c_proj = nnx.Linear(n_embd, n_embd, dtype=dtype, rngs=rngs)
        self.n_head = n_head

    def __call__(self, x: jax.Array) -> jax.Array:
        B, T, C = x.shape
        q, k, v = jnp.split(self.c_attn(x), 3, axis=-1)  # (B, T, C) each
        q, k, v = (t.reshape(B, T, self.n_head, C // self.n_head) for t in (q, k, v))  # (B, T, H, D)
        y = jax.nn.dot_product_attention(q, k, v, is_causal=True)  # (B, T, H, D)
        return self.c_proj(y.reshape(B, T, C))


class MLP(nnx.Module):
    def __init__(self, n_embd: int, gelu: str | None, dtype, rngs: nnx.Rngs):
        self.c_fc = nnx.Linear(n_embd, 4 * n_embd, dtype=dtype, rngs=rngs)
        self.c_proj = nnx.Linear(4 * n_embd, n_embd, dtype=dtype, rngs=rngs)
        self.approximate = gelu != "exact"  # native: jax.nn.gelu's default, the tanh form

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.c_proj(nnx.gelu(self.c_fc(x), approximate=self.approximate))


class Block(nnx.Module):
    def __init__(self, n_embd: int, n_head: int, ln_eps: float | None, gelu: str | None, dtype,
                 rngs: nnx.Rngs):
        eps = {} if ln_eps is None else {"epsilon": ln_eps}
        self.ln_1 = nnx.LayerNorm(n_embd, dtype=dtype, rngs=rngs, **eps)
        self.attn = CausalSelfAttention(n_embd, n_head, dtype, rngs)
        self.ln_2 = nnx.LayerNorm(n_embd, dtype=dtype, rngs=rngs, **eps)
        self.mlp = MLP(n_embd, gelu, dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nnx.Module):
    """Embeddings, blocks, final LayerNorm, head tied to the token embedding."""

    def __init__(self, params: neutral.GptParams, dtype, rngs: nnx.Rngs):
        hp, e = params.layer_hparams(), params.n_embd
        self.wte = nnx.Embed(neutral.VOCAB_SIZE, e, dtype=dtype, rngs=rngs)
        self.wpe = nnx.Embed(params.block_size, e, dtype=dtype, rngs=rngs)
        self.h = nnx.List([Block(e, params.n_head, hp["ln_eps"], hp["gelu"], dtype, rngs)
                           for _ in range(params.n_layer)])
        eps = {} if hp["ln_eps"] is None else {"epsilon": hp["ln_eps"]}
        self.ln_f = nnx.LayerNorm(e, dtype=dtype, rngs=rngs, **eps)

    def __call__(self, idx: jax.Array) -> jax.Array:  # (B, T) -> (B, T, V) float32 logits
        x = self.wte(idx) + self.wpe(jnp.arange(idx.shape[1]))  # (B, T, C)
        for block in self.h:
            x = block(x)
        return self.wte.attend(self.ln_f(x)).astype(jnp.float32)


def neutral_name(path: tuple) -> str:
    """An NNX parameter path -> nanoGPT's name: ('h', 0, 'attn', 'c_attn', 'kernel') ->
    'transformer.h.0.attn.c_attn.weight'."""
    *module, leaf = (str(p) for p in path)
    return "transformer." + ".".join(module) + (".bias" if leaf == "bias" else ".weight")


def to_neutral(state, dtype=np.float32) -> dict[str, np.ndarray]:
    """Parameters or gradients (an nnx.State of Params) in the neutral layout ((out, in) kernels)."""
    out = {}
    for path, leaf in nnx.to_flat_state(state):
        value = np.asarray(getattr(leaf, "value", leaf), dtype)
        out[neutral_name(path)] = value.T.copy() if path[-1] == "kernel" else value
    return out


def build_model(params, data, precision: str) -> GPT:
    model = GPT(params, jnp.bfloat16 if precision == "bf16" else None, nnx.Rngs(0))
    shared = neutral.neutral_weights(data)
    state = nnx.state(model, nnx.Param)
    for path, leaf in nnx.to_flat_state(state):
        value = shared[neutral_name(path)]
        leaf.value = jnp.asarray(value.T if path[-1] == "kernel" else value)
    nnx.update(model, state)
    return model


def loss_of_model(model: GPT, x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


def make_optimizer(model: GPT, params) -> nnx.Optimizer:
    """Global-norm clipping, then AdamW with weight decay on 2-D parameters only."""
    kwargs = native_kwargs("jax", "adamw", params.optimizer_hparams())
    decay_mask = lambda tree: jax.tree.map(lambda p: p.ndim == 2, tree)  # noqa: E731
    tx = optax.chain(optax.clip_by_global_norm(params.grad_clip), optax.adamw(**kwargs, mask=decay_mask))
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


@nnx.jit
def train_step(model: GPT, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
    loss, grads = nnx.value_and_grad(loss_of_model)(model, x, y)
    optimizer.update(model, grads)
    return loss


def make_train_step(model: GPT, optimizer, params, mode: str, precision: str):
    step = nnx.cached_partial(train_step, model, optimizer)
    return lambda x, y: step(jnp.asarray(x), jnp.asarray(y))


@nnx.jit
def eval_loss(model: GPT, x: jax.Array, y: jax.Array) -> jax.Array:
    return loss_of_model(model, x, y)


def evaluate(model: GPT, data, params, precision: str) -> float:
    """Mean loss over the fixed validation batches."""
    return float(np.mean([float(eval_loss(model, jnp.asarray(x), jnp.asarray(y)))
                          for x, y in loop.val_batches(data, params.block_size)]))


@nnx.jit
def forward(model: GPT, x: jax.Array) -> jax.Array:
    return model(x)


def logits_numpy(model: GPT, x: np.ndarray, precision: str) -> np.ndarray:
    return np.asarray(forward(model, jnp.asarray(x)))


def matmul_peak_gflops(precision: str, size: int, repeats: int = 5) -> float:
    """The best rate of (size x size) products at the cell's precision, in GFLOP/s."""
    dtype = jnp.bfloat16 if precision == "bf16" else jnp.float32
    a, b = (jax.random.normal(jax.random.key(i), (size, size), dtype) for i in range(2))
    matmul = jax.jit(jnp.matmul)
    env.sync(matmul(a, b))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        env.sync(matmul(a, b))
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


@nnx.jit
def probe_step(model: GPT, x: jax.Array, y: jax.Array):
    def loss_and_logits(model):
        logits = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits
    (_, logits), grads = nnx.value_and_grad(loss_and_logits, has_aux=True)(model)
    return logits, grads


def parity_probe(params, data, cell_dir: Path, precision: str) -> str:
    """Shared weights, the first training batch: logits and every gradient (before clipping)."""
    model = build_model(params, data, precision)
    x, y = neutral.batch(data["train_tokens"], data["train_offsets"][0], params.block_size)
    logits, grads = probe_step(model, jnp.asarray(x), jnp.asarray(y))
    return loop.save_probe(cell_dir, np.asarray(logits), to_neutral(grads))


def run(cell, params, data, cell_dir: Path):
    model = build_model(params, data, cell.precision)
    step = make_train_step(model, make_optimizer(model, params), params, cell.mode, cell.precision)
    runner = loop.GptRunner(step, env.sync, lambda losses: [float(v) for v in jax.device_get(losses)],
                            lambda: evaluate(model, data, params, cell.precision), data, params.block_size)
    timing, blocks, series = loop.train(runner, params)
    sample = loop.generate(lambda x: logits_numpy(model, x, cell.precision), data["prompt"],
                           params.sample_tokens, params.block_size)
    count = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    # After every clock: the probe and the peak measurement leave training cold and undisturbed.
    artifacts = {"parity_probe": parity_probe(params, data, cell_dir, cell.precision)}
    peak = matmul_peak_gflops(cell.precision, params.peak_matmul_size)
    metrics = neutral.finish(params, data, timing, blocks, series, cell.precision, count, sample, peak)
    return metrics, series, artifacts


def record_steps(params, data, steps: int, dtype: str, align: dict, mode: str, variant: str) -> dict:
    """`spotdiff where`: `steps` AdamW steps from the shared weights in `dtype` (float64 with x64 on),
    one nnx.jit step: every layer's output (the model's own modules called one at a time), the
    loss, every gradient (before clipping) and every parameter after the update. Honours the
    `gelu`, `layernorm_eps` and `adamw_eps` alignments."""
    jax.config.update("jax_enable_x64", True)  # float64 exists only with x64; float32 stays explicit
    chosen, honoured = neutral.where_params(params, align)
    model = build_model(chosen, data, "fp32")
    state = nnx.state(model, nnx.Param)
    for _, leaf in nnx.to_flat_state(state):
        leaf.value = leaf.value.astype(dtype)
    nnx.update(model, state)
    model.wte.dtype = model.wpe.dtype = jnp.dtype(dtype)  # nnx.Embed fixed its dtype at construction
    optimizer = make_optimizer(model, chosen)

    def loss_and_outputs(model: GPT, idx: jax.Array, y: jax.Array):
        outputs = {"transformer.embed": model.wte(idx) + model.wpe(jnp.arange(idx.shape[1]))}  # (B, T, C)
        x = outputs["transformer.embed"]
        for i, block in enumerate(model.h):
            h = f"transformer.h.{i}"
            outputs[f"{h}.ln_1"] = block.ln_1(x)
            outputs[f"{h}.attn"] = block.attn(outputs[f"{h}.ln_1"])
            x = x + outputs[f"{h}.attn"]
            outputs[f"{h}.ln_2"] = block.ln_2(x)
            outputs[f"{h}.mlp.c_fc"] = block.mlp.c_fc(outputs[f"{h}.ln_2"])
            outputs[f"{h}.mlp.gelu"] = nnx.gelu(outputs[f"{h}.mlp.c_fc"], approximate=block.mlp.approximate)
            outputs[f"{h}.mlp"] = block.mlp.c_proj(outputs[f"{h}.mlp.gelu"])
            x = outputs[h] = x + outputs[f"{h}.mlp"]
        outputs["transformer.ln_f"] = model.ln_f(x)
        outputs["lm_head"] = model.wte.attend(outputs["transformer.ln_f"])  # (B, T, V) in `dtype`
        return optax.softmax_cross_entropy_with_integer_labels(outputs["lm_head"], y).mean(), outputs

    @nnx.jit  # one compiled step: op by op, NNX and Optax take minutes for a few steps
    def recorded_step(model: GPT, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array):
        (loss, outputs), grads = nnx.value_and_grad(loss_and_outputs, has_aux=True)(model, x, y)
        optimizer.update(model, grads)
        return loss, outputs, grads

    tensors: dict[str, np.ndarray] = {}
    for step, (x, y) in enumerate(neutral.where_batches(data, params, steps)):
        loss, outputs, grads = recorded_step(model, optimizer, jnp.asarray(x), jnp.asarray(y))
        for name, value in outputs.items():
            tensors[f"{step}/forward/{name}"] = np.asarray(value)
        tensors[f"{step}/loss"] = np.asarray(loss)
        for name, value in to_neutral(grads, dtype).items():
            tensors[f"{step}/grad/{name}"] = value
        for name, value in to_neutral(nnx.state(model, nnx.Param), dtype).items():
            tensors[f"{step}/param/{name}"] = value
    names = list(to_neutral(nnx.state(model, nnx.Param)))
    return {"tensors": tensors, "layers": neutral.where_layers(params), "params": names,
            "optimizer": "adamw", "aligned": honoured}
