"""What the nanoGPT-style reference scripts share with spotdiff: only the data (the gpt task's corpus,
checked by its SHA-256, split 90/10) and how results are printed. Everything else in them is
written the way nanoGPT's train.py and each framework's own examples write it."""

from __future__ import annotations

import json
import sys

import numpy as np

from spotdiff.children import peak_rss_mb
from spotdiff.tasks.gpt.spec import GptParams, corpus_bytes


def load() -> tuple[np.ndarray, np.ndarray]:
    text = np.frombuffer(corpus_bytes(GptParams()), dtype=np.uint8)
    split = int(len(text) * 0.9)
    return text[:split], text[split:]


def get_batch(rng: np.random.Generator, data: np.ndarray, batch_size: int, block_size: int):
    """nanoGPT's get_batch: random windows, targets shifted by one; (B, T) int64 each."""
    ix = rng.integers(0, len(data) - block_size - 1, batch_size)
    x = np.stack([data[i:i + block_size] for i in ix]).astype(np.int64)
    y = np.stack([data[i + 1:i + 1 + block_size] for i in ix]).astype(np.int64)
    return x, y


def add_arguments(parser) -> None:
    """nanoGPT's knobs at the gpt task's defaults."""
    parser.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per step (default 16)")
    parser.add_argument("--block-size", type=int, default=128, help="context length (default 128)")
    parser.add_argument("--n-layer", type=int, default=4, help="blocks (default 4)")
    parser.add_argument("--n-head", type=int, default=4, help="heads (default 4)")
    parser.add_argument("--n-embd", type=int, default=128, help="width (default 128)")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (default 2e-3)")


def report(step_s: list[float], tokens_per_step: int, final_loss: float) -> None:
    """The first step (compile included) apart; tokens/s over the steps after the first 10; the
    process's peak RSS (its own high-water mark, as spotdiff's cells report theirs)."""
    steady = step_s[10:] or step_s[1:] or step_s
    json.dump({"first_step_s": step_s[0], "tokens_per_s": tokens_per_step * len(steady) / sum(steady),
               "final_loss": final_loss, "peak_rss_mb": peak_rss_mb()}, sys.stdout)
    print()
