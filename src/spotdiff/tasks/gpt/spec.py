"""A small GPT: GPT-2's layout as nanoGPT writes it, byte-level, the same weights and batches everywhere.

Token + learned position embeddings, `n_layer` pre-LayerNorm blocks (causal multi-head attention
with one fused qkv projection and an output projection; an MLP of 4 * n_embd with GELU), a final
LayerNorm and a language-model head tied to the token embedding; biases on, dropout 0. AdamW with
betas (0.9, 0.95), weight decay 0.1 on 2-D weights only, gradients clipped to global norm 1.0.

`hparams=aligned` (default) passes the values whose defaults differ between frameworks (GELU exact
vs tanh approximation, LayerNorm epsilon, AdamW epsilon) explicitly from here; `hparams=native`
leaves those three to each framework (NATIVE_DEFAULTS), so their difference shows in the curves
and in parity. `--set gelu=`, `ln_eps=`, `adam_eps=` set one of them for every framework in
either. An explicit AdamW epsilon is added to sqrt(v_hat) everywhere (Keras' own AdamW adds it
before the bias correction). Everything else (initial weights, batches, the task's own
hyper-parameters) is the same in both.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from spotdiff.errors import UserError
from spotdiff.parity import Check, compare
from spotdiff.tasks.base import TaskSpec
from spotdiff.tasks.gpt import corpus
from spotdiff.tasks.shared import neutral_weights  # noqa: F401  (spec API)

VOCAB_SIZE = 256  # bytes
CORPUS_SHA256 = "faad0c7a51b1908aac3e9795767218647cdf86bd00d81f45a9f111f074464863"
VAL_FRACTION = 0.1  # the last 10 % of the bytes
PRECISIONS = ("fp32", "bf16")
# Aligned values (GPT-2 / nanoGPT): passed explicitly to every framework.
ALIGNED = {"gelu": "exact", "ln_eps": 1e-5, "adam_eps": 1e-8}
# What `hparams=native` leaves in place (framework-defaults.md; re-verify on upgrade).
NATIVE_DEFAULTS = {
    "torch": {"gelu": "exact", "ln_eps": 1e-5, "adam_eps": 1e-8},
    "tensorflow": {"gelu": "exact", "ln_eps": 1e-3, "adam_eps": 1e-7},  # Keras; AdamW epsilon-hat
    "jax": {"gelu": "tanh", "ln_eps": 1e-6, "adam_eps": 1e-8},  # jax.nn.gelu, nnx.LayerNorm, optax
    "keras": {"gelu": "exact", "ln_eps": 1e-3, "adam_eps": 1e-7},  # the same Keras layers, any backend
}
# Parity per precision (aligned hyper-parameters, shared weights, the same batches):
# logits of the first batch (absolute), every gradient at the shared init (relative to that
# gradient's largest |value|, plus a floor), and the first `parity_steps` training losses
# (absolute). float32: sums in different orders differ by ~1e-7 relative per op. bfloat16 keeps 8
# bits of mantissa (~4e-3 relative) and each framework casts at different points (torch.autocast
# keeps the residual stream and LayerNorm in float32, Keras and Flax run them in bfloat16).
TOLERANCES = {
    "fp32": {"logits": 1e-4, "grad_rtol": 1e-3, "loss": 1e-3},
    "bf16": {"logits": 3e-2, "grad_rtol": 5e-2, "loss": 2e-2},
}


class GptParams(BaseModel):
    """Every `--set` key of the gpt task, with its default."""

    model_config = ConfigDict(extra="forbid")

    data: str | None = Field(None, description="a text file to train on (its bytes); default: the corpus")
    n_layer: int = Field(4, ge=1, description="transformer blocks")
    n_head: int = Field(4, ge=1, description="attention heads")
    n_embd: int = Field(128, ge=1, description="embedding width")
    block_size: int = Field(128, ge=2, description="context length (tokens)")
    batch_size: int = Field(16, ge=1, description="sequences per step")
    steps: int = Field(200, ge=2, description="training steps")
    lr: float = Field(2e-3, gt=0, description="AdamW learning rate (constant, no warm-up)")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW beta2")
    weight_decay: float = Field(0.1, ge=0, description="decoupled weight decay, 2-D weights only")
    grad_clip: float = Field(1.0, gt=0, description="clip gradients to this global norm")
    hparams: Literal["aligned", "native"] = Field(
        "aligned", description="aligned: GELU, LayerNorm eps, AdamW eps passed; native: each framework's own")
    gelu: Literal["exact", "tanh"] | None = Field(
        None, description="GELU form in every framework; unset: exact when aligned, each one's own if native")
    ln_eps: float | None = Field(
        None, gt=0, description="LayerNorm epsilon in every framework; unset: 1e-5 when aligned")
    adam_eps: float | None = Field(
        None, gt=0, description="AdamW epsilon (added to sqrt(v_hat)) everywhere; unset: 1e-8 when aligned")
    eval_interval: int = Field(25, ge=1, description="steps between validation losses (and clock reads)")
    eval_batches: int = Field(4, ge=1, description="validation batches per evaluation")
    warmup_steps: int = Field(10, ge=0, description="leading steps left out of the steady state")
    parity_steps: int = Field(10, ge=1, description="training losses compared across cells")
    prompt: str = Field("The ", min_length=1, description="the greedy sample's prompt")
    sample_tokens: int = Field(48, ge=0, description="bytes generated greedily after training")
    peak_matmul_size: int = Field(1024, ge=16, description="square matmul measuring the device peak")

    @model_validator(mode="after")
    def _heads_divide(self) -> "GptParams":
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        return self

    def _chosen(self, key: str) -> Any:
        """The value set with --set, else the aligned value when aligned, else None (native)."""
        value = getattr(self, key)
        if value is None and self.hparams == "aligned":
            return ALIGNED[key]
        return value

    def layer_hparams(self) -> dict[str, Any]:
        """GELU form ('exact' | 'tanh'), LayerNorm eps: set or aligned values, or None (native: unset)."""
        return {k: self._chosen(k) for k in ("gelu", "ln_eps")}

    def optimizer_hparams(self) -> dict[str, float]:
        """Neutral AdamW settings for `hparams.native_kwargs(framework, "adamw", ...)`: eps only
        when set or aligned."""
        values = {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "weight_decay": self.weight_decay}
        eps = self._chosen("adam_eps")
        return values if eps is None else {**values, "eps": eps}


# ---- data ---------------------------------------------------------------------------------------

def corpus_bytes(params: GptParams) -> bytes:
    """The training text: the user's file, or the built-in corpus (checked by its SHA-256)."""
    if params.data:
        return Path(params.data).expanduser().read_bytes()
    text = corpus.generate()
    digest = hashlib.sha256(text).hexdigest()
    if digest != CORPUS_SHA256:
        raise RuntimeError(f"the built-in corpus has SHA-256 {digest}, expected {CORPUS_SHA256}: "
                           "numpy's random stream changed; pin numpy or update CORPUS_SHA256")
    return text


def _min_bytes(params: GptParams) -> int:
    """The smallest text that leaves one context + target in the validation split."""
    return math.ceil((params.block_size + 2) / VAL_FRACTION)


def prepare(params: GptParams) -> None:
    """In the parent, before any cell: `data` is a readable file long enough to split."""
    if not params.data:
        return
    path = Path(params.data).expanduser()
    if not path.is_file():
        raise UserError(f"--set data={params.data}: no such file; give a text file to train on")
    size = path.stat().st_size
    if size < _min_bytes(params):
        raise UserError(f"--set data={params.data}: {size} bytes is too short for block_size "
                        f"{params.block_size}; need at least {_min_bytes(params)}")


def batch(tokens: np.ndarray, offsets: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-byte targets, each (B, T) int32, of the windows starting at `offsets` (B,)."""
    index = offsets[:, None] + np.arange(block_size)[None, :]  # (B, T)
    return tokens[index].astype(np.int32), tokens[index + 1].astype(np.int32)


def build_data(params: GptParams, seed: int) -> dict[str, np.ndarray]:
    """Bytes split train/validation, every step's batch offsets (steps, B) and the validation
    offsets (eval_batches, B) from one seeded generator, and the shared weights (torch layout)."""
    text = np.frombuffer(corpus_bytes(params), dtype=np.uint8)
    if len(text) < _min_bytes(params):
        raise UserError(f"the training text has {len(text)} bytes; block_size {params.block_size} "
                        f"needs at least {_min_bytes(params)}")
    split = int(len(text) * (1 - VAL_FRACTION))
    train, val = text[:split], text[split:]
    rng, t = np.random.default_rng(seed), params.block_size
    arrays = {
        "train_tokens": train, "val_tokens": val,
        "train_offsets": rng.integers(0, len(train) - t - 1, (params.steps, params.batch_size)),  # (S, B)
        "val_offsets": rng.integers(0, len(val) - t - 1, (params.eval_batches, params.batch_size)),
        "prompt": np.frombuffer(params.prompt.encode("utf-8"), dtype=np.uint8).astype(np.int32),
    }
    for name, value in shared_weights(params, seed).items():
        arrays[f"w:{name}"] = value
    return arrays


def unigram_loss(data: dict[str, np.ndarray]) -> float:
    """Cross-entropy (nats/byte) of the validation bytes under the training bytes' frequencies
    (add-one smoothed): what a model that ignores context can reach."""
    counts = np.bincount(data["train_tokens"], minlength=VOCAB_SIZE) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(-log_p[data["val_tokens"]].mean())


# ---- the model's neutral facts -----------------------------------------------------------------

def weight_shapes(params: GptParams) -> dict[str, tuple[int, ...]]:
    """nanoGPT's parameter names and PyTorch shapes (Linear weights (out, in)); the head is tied."""
    e, shapes = params.n_embd, {}
    shapes["transformer.wte.weight"] = (VOCAB_SIZE, e)
    shapes["transformer.wpe.weight"] = (params.block_size, e)
    for i in range(params.n_layer):
        h = f"transformer.h.{i}."
        shapes.update({
            h + "ln_1.weight": (e,), h + "ln_1.bias": (e,),
            h + "attn.c_attn.weight": (3 * e, e), h + "attn.c_attn.bias": (3 * e,),
            h + "attn.c_proj.weight": (e, e), h + "attn.c_proj.bias": (e,),
            h + "ln_2.weight": (e,), h + "ln_2.bias": (e,),
            h + "mlp.c_fc.weight": (4 * e, e), h + "mlp.c_fc.bias": (4 * e,),
            h + "mlp.c_proj.weight": (e, 4 * e), h + "mlp.c_proj.bias": (e,),
        })
    shapes["transformer.ln_f.weight"] = (e,)
    shapes["transformer.ln_f.bias"] = (e,)
    return shapes


def shared_weights(params: GptParams, seed: int) -> dict[str, np.ndarray]:
    """nanoGPT's init from numpy: N(0, 0.02) weights and embeddings, N(0, 0.02 / sqrt(2 n_layer))
    for the projections into the residual stream, zero biases, LayerNorm scale 1 and shift 0."""
    rng = np.random.default_rng(seed + 1)
    out = {}
    for name, shape in weight_shapes(params).items():
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
            value = np.ones(shape)
        elif name.endswith(".bias"):
            value = np.zeros(shape)
        else:
            std = 0.02 / math.sqrt(2 * params.n_layer) if name.endswith("c_proj.weight") else 0.02
            value = rng.normal(0.0, std, shape)
        out[name] = value.astype(np.float32)
    return out


def param_count(params: GptParams) -> int:
    """Trainable parameters, the tied head counted once."""
    return sum(math.prod(s) for s in weight_shapes(params).values())


def flops_per_token(params: GptParams) -> int:
    """Training FLOPs per token, as nanoGPT's estimate_mfu counts them (PaLM appendix B): 6 N for
    the weights (N without the position embedding) plus 12 L T E for attention over the full
    context (the causal half that is skipped is counted too, by that convention)."""
    n = param_count(params) - params.block_size * params.n_embd
    return 6 * n + 12 * params.n_layer * params.block_size * params.n_embd


def decode(tokens: list[int]) -> str:
    return bytes(int(t) for t in tokens).decode("utf-8", errors="replace")


# ---- what a cell reports -----------------------------------------------------------------------

def finish(params: GptParams, data, timing_metrics: dict[str, Any], blocks: list[tuple[int, float]],
           series: dict[str, list[float]], precision: str, framework_params: int, sample: list[int],
           matmul_peak_gflops: float) -> dict[str, Any]:
    """Metrics in the names results.json promises (inside the cell; numbers that are not finite
    become None: no verdict on them)."""
    metrics = dict(timing_metrics)
    tokens_per_step = params.batch_size * params.block_size
    steady = _steady_block_us(blocks, params.warmup_steps, params.steps)
    if steady:  # one training run: the spread is across its steady blocks, not across repeats
        metrics["steady_step_us_min"], metrics["steady_step_us_max"] = min(steady), max(steady)
    steps_per_s = metrics.get("steps_per_s")
    flops = flops_per_token(params)
    metrics.update({
        "precision": precision,
        "tokens_per_step": tokens_per_step,
        "tokens_per_s": steps_per_s * tokens_per_step if steps_per_s else None,
        "flops_per_token": flops,
        "param_count": framework_params,
        "param_count_expected": param_count(params),
        "param_count_ok": framework_params == param_count(params),
        "device_matmul_peak_gflops": matmul_peak_gflops,
    })
    rate = metrics["tokens_per_s"]
    metrics["gflops_per_s"] = flops * rate / 1e9 if rate else None
    metrics["mfu"] = metrics["gflops_per_s"] / matmul_peak_gflops if rate and matmul_peak_gflops else None
    unigram = unigram_loss(data)
    train, val = series.get("train_loss") or [], series.get("val_loss") or []
    final_val = _finite(val[-1]) if val else None
    diverged = any(_finite(v) is None for v in train)
    metrics.update({
        "diverged": diverged,
        "sample": None if diverged else params.prompt + decode(sample),  # a NaN model's argmax means nothing
        "first_loss": _finite(train[0]) if train else None,
        "final_train_loss": _finite(train[-1]) if train else None,
        "val_loss": final_val,
        "val_bpb": final_val / math.log(2) if final_val is not None else None,
        "unigram_loss": unigram,
        "unigram_bpb": unigram / math.log(2),
        "below_unigram": final_val < unigram if final_val is not None else None,
    })
    return metrics


def _steady_block_us(blocks: list[tuple[int, float]], warmup_steps: int, steps: int) -> list[float]:
    """Per-step microseconds of each block measure.time_training counted as steady: those that
    started after the warm-up (at most half the run), the first step apart."""
    out, done = [], 0
    for end, seconds in blocks:
        if done >= max(min(warmup_steps, steps // 2), 1) and end > done:
            out.append(seconds / (end - done) * 1e6)
        done = end
    return out


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def derive_metrics(metrics: dict[str, Any], series: dict[str, list], params: GptParams) -> dict[str, Any]:
    derived: dict[str, Any] = {}
    if metrics.get("first_step_s") and metrics.get("steady_step_us"):
        derived["first_over_steady"] = metrics["first_step_s"] * 1e6 / metrics["steady_step_us"]
    return derived


# ---- parity ------------------------------------------------------------------------------------

def parity_checks(precision: str, parity_steps: int) -> list[Check]:
    tol = TOLERANCES[precision]
    return [
        Check("logits", "first-batch logits", atol=tol["logits"]),
        Check("grad", "gradients", atol=1e-6, rtol=tol["grad_rtol"], relative_to="magnitude"),
        Check("loss", f"first {parity_steps} losses", atol=tol["loss"]),
    ]


def cell_precision(cell: dict[str, Any]) -> str:
    return str((cell.get("metrics") or {}).get("precision") or cell.get("precision") or "fp32")


def _reader(parity_steps: int):
    """A cell's probe file (logits, grad:<name>) plus its first `parity_steps` training losses."""
    def read(cell: dict[str, Any]) -> dict[str, Any] | None:
        arrays: dict[str, Any] = {}
        path = (cell.get("artifacts") or {}).get("parity_probe")
        if path and Path(path).exists():
            with np.load(path) as probe:
                arrays = {name: probe[name] for name in probe.files}
        losses = (cell.get("series") or {}).get("train_loss")
        if losses:
            arrays["loss"] = [np.nan if v is None else v for v in losses[:parity_steps]]
        return arrays or None
    return read


def parity(cells: list[dict[str, Any]], params: GptParams) -> dict[str, Any]:
    """Every pair of ok cells: first-batch logits, gradients at the shared init and the first
    `parity_steps` losses, within TOLERANCES of the run's precision (the looser one if cells
    ran at both). `hparams=native` compares too: its differences are the point."""
    precisions = {cell_precision(c) for c in cells if c.get("status") == "ok"} or {"fp32"}
    precision = "bf16" if "bf16" in precisions else "fp32"
    result = compare(cells, parity_checks(precision, params.parity_steps), _reader(params.parity_steps))
    return {"probe": {**result, "precision": precision, "hparams": params.hparams,
                      "tolerances": TOLERANCES[precision]}}


# ---- `spotdiff where` --------------------------------------------------------------------------

# An alignment key of spotdiff.locate.causes -> the --set key that aligns it in every framework.
WHERE_ALIGN = {"gelu": "gelu", "layernorm_eps": "ln_eps", "adamw_eps": "adam_eps"}


def where_layers(params: GptParams) -> list[tuple[str, str]]:
    """(name, kind) of every forward output `record_steps` keeps, in order: the embeddings, in each
    block its two LayerNorms, the attention's output, the MLP's hidden layer, GELU and output and
    the residual stream after the block, then the final LayerNorm and the logits."""
    found = [("transformer.embed", "embedding")]
    for i in range(params.n_layer):
        h = f"transformer.h.{i}"
        found += [(f"{h}.ln_1", "layernorm"), (f"{h}.attn", "attention"), (f"{h}.ln_2", "layernorm"),
                  (f"{h}.mlp.c_fc", "dense"), (f"{h}.mlp.gelu", "gelu"), (f"{h}.mlp", "dense"),
                  (h, "residual")]
    return found + [("transformer.ln_f", "layernorm"), ("lm_head", "dense")]


def where_params(params: GptParams, align: dict[str, Any]) -> tuple[GptParams, list[str]]:
    """The params a `where` rerun records with: each alignment it asks for set for every framework
    (GELU form, LayerNorm eps, AdamW eps), and the keys honoured."""
    honoured = [key for key in align if key in WHERE_ALIGN]
    return params.model_copy(update={WHERE_ALIGN[k]: align[k] for k in honoured}), honoured


def where_batches(data: dict[str, np.ndarray], params: GptParams,
                  steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first `steps` training batches, (x, y) each (B, T) int32: what every recorder trains on."""
    if steps > len(data["train_offsets"]):
        raise ValueError(f"{steps} steps recorded but the task draws {len(data['train_offsets'])}; "
                         "raise --set steps")
    offsets = data["train_offsets"][:steps]  # (steps, B)
    return [batch(data["train_tokens"], row, params.block_size) for row in offsets]


SPEC = TaskSpec(
    name="gpt",
    summary="GPT-2-style byte-level decoder (nanoGPT layout), AdamW, the same weights and batches",
    modes={"torch": ("eager", "compile"), "tensorflow": ("graph", "xla"), "jax": ("jit",)},
    mode_help={
        ("torch", "eager"): "nn.Module with F.scaled_dot_product_attention(is_causal=True), eager",
        ("torch", "compile"): "torch.compile of the whole training step (forward, loss, backward, clip, "
                              "AdamW)",
        ("tensorflow", "graph"): "Keras layers, a tf.function training step (GradientTape, AdamW)",
        ("tensorflow", "xla"): "the same tf.function step with jit_compile=True",
        ("jax", "jit"): "Flax NNX + Optax, nnx.jit training step through nnx.cached_partial "
                        "(Flax's fast path for small models)",
    },
    compiling_modes={"torch": ("compile",), "tensorflow": ("graph", "xla"), "jax": ("jit",),
                     "keras": ("jax-jit", "tensorflow", "tensorflow-jit", "torch-jit")},
    variants=("adamw",),
    where_steps=3,  # `spotdiff where`: record_steps in every impl (tiny sizes: --set n_embd=32 ...)
    params=GptParams,
    build_data=build_data,
    derive_metrics=derive_metrics,
    parity=parity,
    prepare=prepare,
    precisions=PRECISIONS,
    headline_metrics=(
        ("tokens_per_s", "tokens/s (steady)", "tok/s", False),
        ("mfu", "MFU (of the measured matmul peak at the cell's precision)", "", False),
        ("first_step_s", "first step (s, compile included)", "s", True),
        ("compile_s", "compile (s)", "s", True),
        ("val_loss", "validation loss (nats/byte)", "", True),
        ("val_bpb", "bits per byte", "", True),
        ("unigram_bpb", "unigram baseline (bits per byte)", "", None),
        ("peak_rss_mb", "peak RSS (MB)", "MB", True),
        ("peak_device_mb", "peak device memory (MB)", "MB", True),
        ("sample", "greedy sample after training", "", None),
    ),
    plotted_series=(
        ("train_loss", "train loss (per step)", True),
        ("val_loss", "validation loss (per evaluation)", True),
    ),
    training="loop",
)
