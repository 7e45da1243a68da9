"""Variable-length sequences: embedding -> LSTM(64) -> linear, trained with three padding strategies.

The post's Difference #1 (static graphs pad every sentence; dynamic graphs take them as they come),
measured. Every strategy computes the same function: the classifier reads the LSTM state at each
sequence's own last token, so padding changes the work done, never the answer.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from spotdiff.backends import layouts
from spotdiff.parity import Check, compare, npz_reader
from spotdiff.tasks.base import TaskSpec
from spotdiff.tasks.shared import (  # noqa: F401  (spec API)
    epoch_batches,
    neutral_weights,
    probe_batch,
    where_batches,
)

PAD = 0  # token 0 is padding; tokens 1 and 2 are the label's markers, the rest noise
POSITIVE, NEGATIVE = 1, 2
LOSS_TOL = 1e-4  # initial loss on the same batch, across strategies and frameworks (float32), absolute
# The parity probe: shared weights, the first batch, one plain SGD step (lr = `lr`) through the
# mode's own train step. SGD, not the task's Adam: Keras' Adam adds epsilon outside the bias
# correction (epsilon-hat, see docs/defaults.md), which moves small-gradient weights differently by
# design and would hide the numerics this probe is for.
PROBE_CHECKS = (
    Check("loss", "initial loss", atol=LOSS_TOL),
    Check("grad", "gradients", atol=1e-7, rtol=1e-3, relative_to="magnitude"),  # per parameter
    Check("param", "parameters after one step", atol=1e-6, rtol=1e-6),  # element by element
)
STRATEGIES = ("pad-max", "pad-batch", "packed")
# hparams=aligned passes Adam's eps to every framework (Keras' default, 1e-7); hparams=native leaves
# it to each: PyTorch and Optax 1e-8, Keras 1e-7 (docs/defaults.md). Betas are 0.9, 0.999 in all.
ALIGNED_ADAM_EPS = 1e-7
# `spotdiff where`: the layers record_steps records, in order, (name, kind), and the names of the
# parameters in the probe's (in, out) layout (`in_out_layout`) as `where` reports them.
WHERE_LAYERS = [("embedding", "embedding"), ("lstm", "lstm"), ("last", "last-state"), ("fc", "dense")]
WHERE_PARAMS = {"embedding": "embedding.weight", "lstm_kernel": "lstm.kernel",
                "lstm_recurrent": "lstm.recurrent_kernel", "lstm_bias": "lstm.bias",
                "fc_kernel": "fc.kernel", "fc_bias": "fc.bias"}


class SequencesParams(BaseModel):
    """Every `--set` key of the sequences task, with its default."""

    model_config = ConfigDict(extra="forbid")

    n_train: int = Field(1000, ge=1, description="training sequences")
    n_test: int = Field(250, ge=1, description="test sequences")
    min_len: int = Field(5, ge=1, description="shortest sequence (tokens)")
    max_len: int = Field(400, ge=1, description="longest sequence (tokens)")
    median_len: float = Field(40.0, gt=0, description="median of the log-normal lengths")
    vocab: int = Field(1000, ge=3, description="vocabulary size (0 = padding)")
    embed: int = Field(32, ge=1, description="embedding width")
    hidden: int = Field(64, ge=1, description="LSTM hidden units")
    epochs: int = Field(2, ge=1, description="training epochs")
    batch_size: int = Field(32, ge=1, description="sequences per batch")
    lr: float = Field(0.005, gt=0, description="Adam learning rate (and the parity probe's SGD step)")
    parity_probe: bool = Field(True, description="record gradients and one SGD step from the shared weights")
    hparams: Literal["aligned", "native"] = Field(
        "aligned", description="aligned: Adam's eps (1e-7) passed to every framework; native: each "
        "framework's own default (PyTorch and Optax 1e-8, Keras 1e-7)")

    def optimizer_hparams(self) -> dict[str, float]:
        """Neutral Adam settings for `hparams.native_kwargs(framework, "adam", ...)`."""
        return {"lr": self.lr, "eps": ALIGNED_ADAM_EPS} if self.hparams == "aligned" else {"lr": self.lr}


def where_named(probe_layout: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Parameters or gradients in the probe's layout, named as `spotdiff where` reports them."""
    return {WHERE_PARAMS[name]: value for name, value in probe_layout.items()}


def where_lstm_outputs(outputs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """LSTM outputs (B, W, H) at any padded width W -> (B, T, H), T the batch's longest sequence,
    zero past each sequence's end: what every strategy computes alike (padded steps are not)."""
    longest = int(np.max(lengths))
    real = np.arange(longest)[None, :] < np.asarray(lengths)[:, None]  # (B, T)
    return np.where(real[..., None], outputs[:, :longest], 0).astype(outputs.dtype)


def bucket_length(longest: int, max_len: int) -> int:
    """The next power of two >= longest, capped at max_len (JAX pad-batch: one compile per bucket)."""
    return int(min(max_len, 1 << max(0, int(longest - 1).bit_length())))


def bucket_count(min_len: int, max_len: int) -> int:
    """How many distinct bucket lengths sequences of min_len..max_len can need."""
    return len({bucket_length(n, max_len) for n in range(min_len, max_len + 1)})


def padding_waste(batch_lengths: list[np.ndarray], steps_per_sequence: list[int | None]) -> float:
    """Computed timesteps / real timesteps over batches: every sequence of batch i runs
    steps_per_sequence[i] steps, or exactly its own length when that is None (packed). 1.0 = no waste."""
    real = sum(int(np.sum(lengths)) for lengths in batch_lengths)
    computed = sum(int(np.sum(lengths)) if steps is None else int(steps) * len(lengths)
                   for lengths, steps in zip(batch_lengths, steps_per_sequence))
    return computed / real


def computed_steps(framework: str, mode: str, lengths: np.ndarray, max_len: int) -> int | None:
    """Timesteps each sequence of a batch runs in (framework, mode); None: its own length.
    The padded width of the batch is this, or the batch's longest sequence when None."""
    if mode == "pad-max":
        return max_len
    if framework == "jax":  # pad-batch and packed both run on a power-of-two bucket
        return bucket_length(int(np.max(lengths)), max_len)
    if framework == "torch" and mode == "packed":
        return None
    return int(np.max(lengths))  # TF masking still steps through the padding, holding the state


def padded_width(framework: str, mode: str, lengths: np.ndarray, max_len: int) -> int:
    steps = computed_steps(framework, mode, lengths, max_len)
    return int(np.max(lengths)) if steps is None else steps


def build_data(params: SequencesParams, seed: int) -> dict[str, np.ndarray]:
    """Right-padded token matrices (N, max_len) int32, lengths, labels (1 when the positive marker
    outnumbers the negative one), the per-epoch order and the shared weights (torch layout)."""
    rng = np.random.default_rng(seed)
    n = params.n_train + params.n_test
    lengths = np.exp(rng.normal(np.log(params.median_len), 0.9, n)).round().astype(np.int64)
    lengths = np.clip(lengths, params.min_len, params.max_len)
    tokens = rng.integers(3, params.vocab, (n, params.max_len)).astype(np.int32)
    markers = rng.random((n, params.max_len))
    tokens[markers < 0.08] = POSITIVE
    tokens[(markers >= 0.08) & (markers < 0.16)] = NEGATIVE
    positions = np.arange(params.max_len)[None, :]
    tokens[positions >= lengths[:, None]] = PAD
    labels = ((tokens == POSITIVE).sum(1) > (tokens == NEGATIVE).sum(1)).astype(np.int64)
    arrays = {
        "x_train": tokens[: params.n_train],
        "len_train": lengths[: params.n_train],
        "y_train": labels[: params.n_train],
        "x_test": tokens[params.n_train :],
        "len_test": lengths[params.n_train :],
        "y_test": labels[params.n_train :],
        "epoch_order": np.stack([rng.permutation(params.n_train) for _ in range(params.epochs)]),
    }
    for name, value in shared_weights(params, seed).items():
        arrays[f"w:{name}"] = value
    return arrays


def shared_weights(params: SequencesParams, seed: int) -> dict[str, np.ndarray]:
    """PyTorch's layout and init (gates i, f, g, o; two biases), from numpy."""
    rng = np.random.default_rng(seed + 1)
    h, e = params.hidden, params.embed
    bound = 1 / np.sqrt(h)

    def uniform(*shape):
        return rng.uniform(-bound, bound, shape).astype(np.float32)

    embedding = rng.normal(0, 1, (params.vocab, e)).astype(np.float32)
    return {
        "embedding.weight": embedding,
        "lstm.weight_ih_l0": uniform(4 * h, e),
        "lstm.weight_hh_l0": uniform(4 * h, h),
        "lstm.bias_ih_l0": uniform(4 * h),
        "lstm.bias_hh_l0": uniform(4 * h),
        "fc.weight": uniform(2, h),
        "fc.bias": uniform(2),
    }


def in_out_layout(torch_named: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PyTorch-named arrays (weights or gradients) -> the parity probe's layout, Keras' and JAX's:
    `embedding`, `lstm_kernel` (E, 4H), `lstm_recurrent` (H, 4H), `lstm_bias` (4H,) (the two
    PyTorch biases summed), `fc_kernel` (H, 2), `fc_bias`."""
    w = torch_named
    kernel, recurrent, bias = layouts.lstm_torch_to_keras(
        *(w[f"lstm.{k}_l0"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    )
    return {
        "embedding": w["embedding.weight"],
        "lstm_kernel": kernel,
        "lstm_recurrent": recurrent,
        "lstm_bias": bias,
        "fc_kernel": w["fc.weight"].T.copy(),
        "fc_bias": w["fc.bias"],
    }


def finish(
    params: SequencesParams,
    data,
    framework: str,
    mode: str,
    epoch_s: list[float],
    train_loss: list[float],
    compilations: int,
    test_accuracy: float,
    first_batch_loss: float,
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Metrics and series in the names results.json promises (called inside the cell)."""
    steady = epoch_s[1:] or epoch_s
    order = data["epoch_order"][0]
    batch_lengths = [data["len_train"][b] for b in epoch_batches(order, params.batch_size)]
    real_tokens = int(data["len_train"].sum())
    metrics = {
        "test_accuracy": test_accuracy,
        "first_batch_loss": first_batch_loss,
        "first_epoch_s": epoch_s[0],
        "epoch_s": float(np.median(steady)),
        "steady_from_first_epoch": len(epoch_s) == 1,
        "real_tokens_per_s": real_tokens * len(steady) / sum(steady),
        "padding_waste": padding_waste(
            batch_lengths,
            [computed_steps(framework, mode, lengths, params.max_len) for lengths in batch_lengths],
        ),
        "compilations": compilations,
    }
    return metrics, {"train_loss": train_loss, "epoch_s": epoch_s}


def derive_metrics(
    metrics: dict[str, Any], series: dict[str, list[float]], params: SequencesParams
) -> dict[str, Any]:
    derived: dict[str, Any] = {"bucket_count": bucket_count(params.min_len, params.max_len)}
    if metrics.get("first_epoch_s") and metrics.get("epoch_s"):
        derived["first_over_steady"] = metrics["first_epoch_s"] / metrics["epoch_s"]
    return derived


def parity(cells: list[dict[str, Any]], params: SequencesParams) -> dict[str, Any]:
    """Every pair of ok cells: the probe's loss, gradients and one-step parameters within
    PROBE_CHECKS (only the initial loss when `parity_probe` is off). See spotdiff.parity."""
    checks = list(PROBE_CHECKS if params.parity_probe else PROBE_CHECKS[:1])
    read = npz_reader("parity_probe", metrics={"loss": "first_batch_loss"})
    return {"probe": {**compare(cells, checks, read), "probe_tol": LOSS_TOL}}


SPEC = TaskSpec(
    name="sequences",
    summary="embedding -> LSTM(64) -> linear on log-normal-length sequences: pad-max, pad-batch, packed",
    modes={"torch": STRATEGIES, "tensorflow": STRATEGIES, "jax": STRATEGIES},
    mode_help={
        ("torch", "pad-max"): "every batch padded to the global maximum, eager nn.LSTM",
        ("torch", "pad-batch"): "padded to each batch's own maximum, eager nn.LSTM",
        ("torch", "packed"): "pack_padded_sequence: no padded step is computed",
        ("tensorflow", "pad-max"): "tf.function with a fixed input signature (one trace)",
        ("tensorflow", "pad-batch"): "tf.function(reduce_retracing=True) on each batch's own length",
        ("tensorflow", "packed"): "Keras masking (mask_zero) under tf.function(reduce_retracing=True)",
        ("jax", "pad-max"): "jit on the global maximum length (one compile)",
        ("jax", "pad-batch"): "jit on power-of-two length buckets (one compile per bucket)",
        ("jax", "packed"): "masked lax.scan on power-of-two buckets (state frozen past each length)",
    },
    variants=("adam",),
    where_steps=2,  # `spotdiff where`: record_steps in torch_impl, tf_impl, jax_impl
    params=SequencesParams,
    build_data=build_data,
    derive_metrics=derive_metrics,
    parity=parity,
    headline_metrics=(
        ("epoch_s", "steady epoch (s)", "s", True),
        ("first_epoch_s", "first epoch (s)", "s", True),
        ("real_tokens_per_s", "real tokens/s", "tokens/s", False),
        ("padding_waste", "padding waste (computed/real steps, by construction)", "", True),
        ("compilations", "traces/compilations", "", True),
        ("test_accuracy", "test accuracy", "", False),
        ("peak_rss_mb", "peak RSS (MB)", "MB", True),
    ),
    plotted_series=(
        ("train_loss", "train loss (per step)", True),
        ("epoch_s", "epoch time (s)", False),
    ),
    training="loop",
    report_sections=("static_dynamic", "padding_chart"),
)
