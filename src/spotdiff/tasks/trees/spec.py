"""Tree-structured networks: a recursive net over random arithmetic expression trees whose shape
differs per sample, trained by recursion (dynamic graphs), tf.function per structure, jit per
structure, or a linearised, bucketed scan (static graphs).

The post's Difference #1 at its hardest (it points at TensorFlow Fold): a static graph wants one
shape, and here no two trees need share one. Every mode computes the same function: a leaf is a
digit embedding, an internal node tanh(W_op [left; right] + b_op), the root goes to a linear
classifier predicting whether the expression's value is positive.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from spotdiff.parity import Check, compare, npz_reader
from spotdiff.tasks.base import TaskSpec
from spotdiff.tasks.shared import (  # noqa: F401  (spec API)
    epoch_batches,
    neutral_weights,
    probe_batch,
    where_batches,
)
from spotdiff.tasks.trees import data as trees

LOSS_TOL = 1e-4  # initial loss on the same batch, across modes and frameworks (float32), absolute
# The parity probe: shared weights, the first batch, one plain SGD step (lr = `lr`) through the
# mode's own train step (SGD, not Adam: see sequences/spec.py). Neutral (PyTorch) layout.
PROBE_CHECKS = (
    Check("loss", "initial loss", atol=LOSS_TOL),
    Check("grad", "gradients", atol=1e-7, rtol=1e-3, relative_to="magnitude"),  # per parameter
    Check("param", "parameters after one step", atol=1e-6, rtol=1e-6),  # element by element
)
# hparams=aligned passes Adam's eps to every framework (Keras' default, 1e-7); hparams=native
# leaves it to each: PyTorch and Optax 1e-8, Keras 1e-7 (docs/defaults.md). Betas are 0.9, 0.999 in all.
ALIGNED_ADAM_EPS = 1e-7
# `spotdiff where`: the layers record_steps records, in order, (name, kind): every tree's leaf
# embeddings (sum L, H), its internal node states in node order (sum I, H), the logits (B, 2).
WHERE_LAYERS = [("embedding", "embedding"), ("combine", "tanh-dense"), ("fc", "dense")]
WHERE_PARAMS = ("embedding.weight", "combine.weight", "combine.bias", "fc.weight", "fc.bias")
MODES = {
    "torch": ("eager",),
    "tensorflow": ("eager", "function"),
    "jax": ("jit-per-structure", "linearised"),
}


class TreesParams(BaseModel):
    """Every `--set` key of the trees task, with its default."""

    model_config = ConfigDict(extra="forbid")

    n_train: int = Field(400, ge=1, description="training trees")
    n_test: int = Field(200, ge=1, description="test trees")
    max_depth: int = Field(3, ge=1, le=8, description="deepest level of a tree (the root is depth 0)")
    leaf_prob: float = Field(0.25, ge=0, le=1, description="chance that a node below the root is a leaf")
    hidden: int = Field(32, ge=1, description="node state width")
    epochs: int = Field(4, ge=1, description="training epochs")
    batch_size: int = Field(20, ge=1, description="trees per batch")
    lr: float = Field(0.01, gt=0, description="Adam learning rate (and the parity probe's SGD step)")
    parity_probe: bool = Field(True, description="record gradients and one SGD step from the shared weights")
    hparams: Literal["aligned", "native"] = Field(
        "aligned", description="aligned: Adam's eps (1e-7) passed to every framework; native: each "
        "framework's own default (PyTorch and Optax 1e-8, Keras 1e-7)")

    def optimizer_hparams(self) -> dict[str, float]:
        """Neutral Adam settings for `hparams.native_kwargs(framework, "adam", ...)`."""
        return {"lr": self.lr, "eps": ALIGNED_ADAM_EPS} if self.hparams == "aligned" else {"lr": self.lr}


def build_data(params: TreesParams, seed: int) -> dict[str, np.ndarray]:
    """Train and test trees (`<array>_train`, `<array>_test`, see data.make_trees), the per-epoch
    order and the shared weights (`w:<name>`, PyTorch layout)."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split, count in (("train", params.n_train), ("test", params.n_test)):
        for name, value in trees.make_trees(rng, count, params.max_depth, params.leaf_prob).items():
            arrays[f"{name}_{split}"] = value
    arrays["epoch_order"] = np.stack([rng.permutation(params.n_train) for _ in range(params.epochs)])
    for name, value in shared_weights(params, seed).items():
        arrays[f"w:{name}"] = value
    return arrays


def shared_weights(params: TreesParams, seed: int) -> dict[str, np.ndarray]:
    """embedding (10, H); combine.weight (ops, H, 2H) and combine.bias (ops, H), one per op;
    fc.weight (2, H), fc.bias (2). Uniform in ±1/sqrt(fan_in) like PyTorch's Linear."""
    rng = np.random.default_rng(seed + 1)
    h, n_ops = params.hidden, len(trees.OPS)

    def uniform(fan_in: int, *shape: int) -> np.ndarray:
        bound = 1 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape).astype(np.float32)

    return {
        "embedding.weight": rng.normal(0, 1, (trees.DIGITS, h)).astype(np.float32),
        "combine.weight": uniform(2 * h, n_ops, h, 2 * h), "combine.bias": uniform(2 * h, n_ops, h),
        "fc.weight": uniform(h, 2, h), "fc.bias": uniform(h, 2),
    }


def distinct_structures(data: dict[str, np.ndarray], split: str = "train") -> int:
    return len({trees.structure_of(data, split, i) for i in range(len(data[f"labels_{split}"]))})


def bucket_count(max_depth: int) -> int:
    """How many node-count buckets trees of depth <= max_depth can need (3 .. 2**(D+1) - 1 nodes)."""
    return len({trees.node_bucket(n) for n in range(3, 2 ** (max_depth + 1))})


def padding_waste(data: dict[str, np.ndarray], framework: str, mode: str, batch_size: int) -> float:
    """Internal-node steps computed / real internal nodes over epoch 1 (1.0 = none): only the
    linearised scan computes padded steps (the batch padded to its bucket and to batch_size trees)."""
    order = data["epoch_order"][0]
    real = int(np.sum(data["n_leaves_train"] - 1))
    if mode != "linearised":
        return 1.0
    computed = sum(trees.node_bucket(int(2 * data["n_leaves_train"][b].max() - 1)) // 2 * batch_size
                   for b in epoch_batches(order, batch_size))
    return computed / real


def finish(
    params: TreesParams,
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
    metrics = {
        "test_accuracy": test_accuracy,
        "first_batch_loss": first_batch_loss,
        "first_epoch_s": epoch_s[0],
        "epoch_s": float(np.median(steady)),
        "steady_from_first_epoch": len(epoch_s) == 1,
        "trees_per_s": params.n_train * len(steady) / sum(steady),
        "first_epoch_trees_per_s": params.n_train / epoch_s[0],
        "padding_waste": padding_waste(data, framework, mode, params.batch_size),
        "compilations": compilations,
        "distinct_structures": distinct_structures(data),
        "majority_accuracy": float(max(np.mean(data["labels_test"]), 1 - np.mean(data["labels_test"]))),
    }
    return metrics, {"train_loss": train_loss, "epoch_s": epoch_s}


def derive_metrics(
    metrics: dict[str, Any], series: dict[str, list[float]], params: TreesParams
) -> dict[str, Any]:
    derived: dict[str, Any] = {"bucket_count": bucket_count(params.max_depth)}
    if metrics.get("first_epoch_s") and metrics.get("epoch_s"):
        derived["first_over_steady"] = metrics["first_epoch_s"] / metrics["epoch_s"]
    return derived


def parity(cells: list[dict[str, Any]], params: TreesParams) -> dict[str, Any]:
    """Every pair of ok cells: the probe's loss, gradients and one-step parameters within
    PROBE_CHECKS (only the initial loss when `parity_probe` is off). See spotdiff.parity."""
    checks = list(PROBE_CHECKS if params.parity_probe else PROBE_CHECKS[:1])
    read = npz_reader("parity_probe", metrics={"loss": "first_batch_loss"})
    return {"probe": {**compare(cells, checks, read), "probe_tol": LOSS_TOL}}


SPEC = TaskSpec(
    name="trees",
    summary="recursive net over random arithmetic expression trees (sign of the value): "
    "recursion vs per-structure graphs vs a linearised scan",
    modes=MODES,
    mode_help={
        (
            "torch",
            "eager",
        ): "plain Python recursion over each tree; autograd differentiates the batch's mean loss",
        ("tensorflow", "eager"): "plain Python recursion under GradientTape",
        (
            "tensorflow",
            "function",
        ): "tf.function of one tree's loss and gradients, retraced per tree structure",
        (
            "jax",
            "jit-per-structure",
        ): "jax.jit of one tree's loss and gradients, the structure a static argument",
        (
            "jax",
            "linearised",
        ): "node arrays run by lax.scan, vmapped over the batch, power-of-two node buckets",
    },
    variants=("adam",),
    where_steps=2,  # `spotdiff where`: record_steps in torch_impl, tf_impl, jax_impl
    params=TreesParams,
    build_data=build_data,
    derive_metrics=derive_metrics,
    parity=parity,
    headline_metrics=(
        ("epoch_s", "steady epoch (s)", "s", True),
        ("first_epoch_s", "first epoch (s)", "s", True),
        ("trees_per_s", "trees/s (steady)", "trees/s", False),
        ("compilations", "traces/compilations", "", True),
        ("padding_waste", "padding waste (computed/real nodes, by construction)", "", True),
        ("test_accuracy", "test accuracy", "", False),
        ("peak_rss_mb", "peak RSS (MB)", "MB", True),
    ),
    plotted_series=(
        ("train_loss", "train loss (per step)", True),
        ("epoch_s", "epoch time (s)", False),
    ),
    training="loop",
    report_sections=("static_dynamic",),
)
