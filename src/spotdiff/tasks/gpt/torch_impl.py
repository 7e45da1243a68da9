"""The GPT in PyTorch, as nanoGPT's model.py writes it: nn.Module blocks, F.scaled_dot_product_attention
(is_causal=True), a head tied to the token embedding, AdamW with decay on 2-D weights only.
`compile` mode compiles the whole training step; bf16 is torch.autocast over forward and loss."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spotdiff.backends.torch import env, weights
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.gpt import loop
from spotdiff.tasks.gpt import spec as neutral


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)  # fused q, k, v
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.n_head = n_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)  # (B, T, C) each
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in (q, k, v))  # (B, H, T, D)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, n_embd: int, gelu: str | None):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.gelu = nn.GELU(approximate="tanh" if gelu == "tanh" else "none")  # native: exact
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, ln_eps: float | None, gelu: str | None):
        super().__init__()
        eps = {} if ln_eps is None else {"eps": ln_eps}
        self.ln_1 = nn.LayerNorm(n_embd, **eps)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd, **eps)
        self.mlp = MLP(n_embd, gelu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's GPT: embeddings, blocks, final LayerNorm, tied head."""

    def __init__(self, params: neutral.GptParams):
        super().__init__()
        hp, e = params.layer_hparams(), params.n_embd
        eps = {} if hp["ln_eps"] is None else {"eps": hp["ln_eps"]}
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(neutral.VOCAB_SIZE, e),
            wpe=nn.Embedding(params.block_size, e),
            h=nn.ModuleList([Block(e, params.n_head, hp["ln_eps"], hp["gelu"])
                             for _ in range(params.n_layer)]),
            ln_f=nn.LayerNorm(e, **eps),
        ))
        self.lm_head = nn.Linear(e, neutral.VOCAB_SIZE, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V) logits
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def build_model(params, data, precision: str) -> GPT:
    # precision: unused; PyTorch keeps float32 weights and applies bf16 per call (autocast)
    model = GPT(params)
    weights.load_neutral(model, neutral.neutral_weights(data))
    return model.to(env.device())


def autocast(precision: str):
    return torch.autocast(env.device().type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.long().view(-1))


def make_optimizer(model: GPT, params) -> torch.optim.Optimizer:
    """nanoGPT's configure_optimizers: weight decay on 2-D parameters only; fused on CUDA."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    kwargs = native_kwargs("torch", "adamw", params.optimizer_hparams())
    groups = [{"params": decay, "weight_decay": kwargs.pop("weight_decay")},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, fused=env.device().type == "cuda", **kwargs)


def make_train_step(model: GPT, optimizer, params, mode: str, precision: str):
    """One step: forward and loss (under autocast for bf16), backward, clip, AdamW."""
    def train_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(precision):
            loss = loss_fn(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    step = torch.compile(train_step) if mode == "compile" else train_step
    device = env.device()
    return lambda x, y: step(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))


@torch.no_grad()
def evaluate(model: GPT, data, params, precision: str) -> float:
    """Mean loss over the fixed validation batches."""
    model.eval()
    losses = []
    for x, y in loop.val_batches(data, params.block_size):
        x, y = torch.from_numpy(x).to(env.device()), torch.from_numpy(y).to(env.device())
        with autocast(precision):
            losses.append(loss_fn(model(x), y).item())
    model.train()
    return float(np.mean(losses))


@torch.no_grad()
def logits_numpy(model: GPT, x: np.ndarray, precision: str) -> np.ndarray:
    model.eval()
    with autocast(precision):
        logits = model(torch.from_numpy(x).to(env.device()))
    model.train()
    return logits.float().cpu().numpy()


def matmul_peak_gflops(precision: str, size: int, repeats: int = 5) -> float:
    """The best rate of (size x size) products at the cell's precision, in GFLOP/s."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = (torch.randn(size, size, device=env.device(), dtype=dtype) for _ in range(2))
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        env.sync()
        start = time.perf_counter()
        torch.mm(a, b)
        env.sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def parity_probe(params, data, cell_dir: Path, precision: str) -> str:
    """Shared weights, the first training batch: logits and every gradient (before clipping)."""
    model = build_model(params, data, precision)
    x, y = (torch.from_numpy(a).to(env.device()) for a in
            neutral.batch(data["train_tokens"], data["train_offsets"][0], params.block_size))
    with autocast(precision):
        logits = model(x)
        loss = loss_fn(logits, y)
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return loop.save_probe(cell_dir, logits.detach().float().cpu().numpy(), weights.to_neutral(grads))


def run(cell, params, data, cell_dir: Path):
    torch.manual_seed(cell.seed)
    model = build_model(params, data, cell.precision)
    step = make_train_step(model, make_optimizer(model, params), params, cell.mode, cell.precision)
    runner = loop.GptRunner(step, env.sync, lambda losses: torch.stack(losses).float().tolist(),
                            lambda: evaluate(model, data, params, cell.precision), data, params.block_size)
    timing, blocks, series = loop.train(runner, params)
    sample = loop.generate(lambda x: logits_numpy(model, x, cell.precision), data["prompt"],
                           params.sample_tokens, params.block_size)
    count = sum(p.numel() for p in model.parameters())  # the tied head once
    # After every clock: the probe and the peak measurement leave training cold and undisturbed.
    artifacts = {"parity_probe": parity_probe(params, data, cell_dir, cell.precision)}
    peak = matmul_peak_gflops(cell.precision, params.peak_matmul_size)
    metrics = neutral.finish(params, data, timing, blocks, series, cell.precision, count, sample, peak)
    return metrics, series, artifacts


def record_steps(params, data, steps: int, dtype: str, align: dict, mode: str, variant: str) -> dict:
    """`spotdiff where`: `steps` AdamW steps from the shared weights in `dtype`, eagerly on the CPU:
    every layer's output (the model's own modules called one at a time), the loss, every gradient
    (before clipping) and every parameter after the update. Honours the `gelu`, `layernorm_eps` and
    `adamw_eps` alignments."""
    chosen, honoured = neutral.where_params(params, align)
    model = GPT(chosen)
    weights.load_neutral(model, neutral.neutral_weights(data))
    model = model.to(device="cpu", dtype=getattr(torch, dtype))
    optimizer = make_optimizer(model, chosen)
    tensors: dict[str, np.ndarray] = {}
    for step, (x, y) in enumerate(neutral.where_batches(data, params, steps)):
        idx = torch.from_numpy(x)
        positions = torch.arange(idx.size(1))
        outputs = {"transformer.embed": model.transformer.wte(idx) + model.transformer.wpe(positions)}
        h = outputs["transformer.embed"]
        for i, block in enumerate(model.transformer.h):
            name = f"transformer.h.{i}"
            outputs[f"{name}.ln_1"] = block.ln_1(h)
            outputs[f"{name}.attn"] = block.attn(outputs[f"{name}.ln_1"])
            h = h + outputs[f"{name}.attn"]
            outputs[f"{name}.ln_2"] = block.ln_2(h)
            outputs[f"{name}.mlp.c_fc"] = block.mlp.c_fc(outputs[f"{name}.ln_2"])
            outputs[f"{name}.mlp.gelu"] = block.mlp.gelu(outputs[f"{name}.mlp.c_fc"])
            outputs[f"{name}.mlp"] = block.mlp.c_proj(outputs[f"{name}.mlp.gelu"])
            h = outputs[name] = h + outputs[f"{name}.mlp"]
        outputs["transformer.ln_f"] = model.transformer.ln_f(h)
        outputs["lm_head"] = model.lm_head(outputs["transformer.ln_f"])  # (B, T, V) in `dtype`
        loss = F.cross_entropy(outputs["lm_head"].flatten(0, 1), torch.from_numpy(y).long().flatten())
        loss.backward()
        for name, value in outputs.items():
            tensors[f"{step}/forward/{name}"] = value.detach().numpy().copy()
        tensors[f"{step}/loss"] = loss.detach().numpy().copy()
        named = dict(model.named_parameters())
        for name, grad in weights.to_neutral({n: p.grad for n, p in named.items()}).items():
            tensors[f"{step}/grad/{name}"] = grad
        torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for name, value in weights.to_neutral(named).items():
            tensors[f"{step}/param/{name}"] = value
    return {"tensors": tensors, "layers": neutral.where_layers(params), "params": list(named),
            "optimizer": "adamw", "aligned": honoured}
