"""The gpt training loop every framework runs, timed by spotdiff.measure (numpy only, no framework).

An implementation supplies its compiled or eager `step(x, y) -> loss handle`, a `sync`, a way to
turn loss handles into floats and a validation loss; `train` feeds the task's batches in order and
hands the clock to `measure.time_training`: the first step (trace/compile included) apart, a device
sync before every clock read, losses fetched and validation run only after a block's clock stopped.
One training run per cell (its spread is across steady blocks): a GPT cell is long enough that
retraining it `--repeats` times would triple the run for little extra information.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from spotdiff import measure
from spotdiff.tasks.gpt import spec as neutral


@dataclass
class GptRunner:
    """A `measure.StepRunner` over the task's pre-drawn batches."""

    step: Callable[[np.ndarray, np.ndarray], Any]  # numpy (B, T) int32 inputs and targets -> loss
    sync_fn: Callable[[Any], None]
    to_floats: Callable[[list[Any]], list[float]]
    val_loss: Callable[[], float]
    data: dict[str, np.ndarray]
    block_size: int
    done: int = 0
    val_steps: list[float] = field(default_factory=list)
    whole_loop: bool = False

    def reset(self) -> None:  # one run per cell: nothing to restore
        pass

    def compile(self, steps: int) -> None:
        pass

    def run(self, steps: int) -> list[Any]:
        losses = []
        for _ in range(steps):
            offsets = self.data["train_offsets"][self.done]  # (B,)
            x, y = neutral.batch(self.data["train_tokens"], offsets, self.block_size)
            losses.append(self.step(x, y))
            self.done += 1
        return losses

    def sync(self, handle: list[Any]) -> None:
        self.sync_fn(handle[-1])

    def fetch(self, handle: list[Any]) -> dict[str, np.ndarray]:
        self.val_steps.append(self.done)
        return {"train_loss": np.asarray(self.to_floats(handle)), "val_loss": np.asarray([self.val_loss()])}


def train(runner: GptRunner, params: neutral.GptParams) -> tuple[dict[str, Any], list, dict[str, list]]:
    """Train `params.steps` steps; (timing metrics, blocks, series: train_loss per step, val_loss
    and val_step per evaluation)."""
    plan = measure.TimingPlan(steps=params.steps, repeats=1, block_steps=params.eval_interval,
                              warmup_steps=params.warmup_steps)
    timing = measure.time_training(runner, plan)
    series = {**timing.series, "val_step": [float(s) for s in runner.val_steps]}
    return timing.metrics(), timing.blocks, series


def val_batches(data: dict[str, np.ndarray], block_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The fixed validation batches, (x, y) each (B, T) int32."""
    return [neutral.batch(data["val_tokens"], offsets, block_size) for offsets in data["val_offsets"]]


def greedy_context(tokens: list[int], block_size: int) -> tuple[np.ndarray, int]:
    """The last `block_size` tokens right-padded to (1, block_size) and the position to read:
    a fixed shape, so compiled forwards are traced once (causal: the padding is never seen)."""
    context = tokens[-block_size:]
    padded = np.zeros((1, block_size), np.int32)
    padded[0, : len(context)] = context
    return padded, len(context) - 1


def generate(logits_fn: Callable[[np.ndarray], np.ndarray], prompt: np.ndarray, n: int,
             block_size: int) -> list[int]:
    """`n` bytes after `prompt`, each the argmax of the logits at the last real position;
    `logits_fn` maps (1, T) int32 -> (1, T, V) numpy."""
    tokens = [int(t) for t in prompt]
    for _ in range(n):
        context, position = greedy_context(tokens, block_size)
        tokens.append(int(np.argmax(logits_fn(context)[0, position])))
    return tokens[len(prompt):]


def save_probe(cell_dir, logits: np.ndarray, grads: dict[str, np.ndarray]) -> str:
    """`parity_probe.npz`: first-batch logits (B, T, V) and every gradient in the neutral layout."""
    from pathlib import Path

    path = Path(cell_dir) / "parity_probe.npz"
    np.savez(path, logits=np.asarray(logits, np.float32),
             **{f"grad:{k}": np.asarray(v, np.float32) for k, v in grads.items()})
    return path.name
