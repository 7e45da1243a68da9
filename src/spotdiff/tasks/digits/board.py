"""What a digits cell shows in TensorBoard, the same for every framework (numpy in, no framework here).

Each implementation feeds it numpy arrays in the neutral layout (PyTorch's names and shapes), so
the three runs carry the same tags side by side:

- `inputs/train_samples`: the first training batch as the model sees it;
- `parameters/<name>`, `gradients/<name>`: histograms at step 0 and after every epoch (K = one
  epoch of steps); the gradient is that of the fixed probe batch with dropout off, taken outside
  the clock and without touching the optimizer or the random streams training uses;
- `train/loss` every step, `test/loss`, `test/accuracy`, `time/epoch_s`, `train/learning_rate` at
  each epoch's last step;
- `filters/conv1`: the first-layer kernels; `test/misclassified`: misclassified test digits, with
  their predicted and true labels as text;
- the Projector: penultimate-layer features of test digits with their labels and sprite images.

Nothing here runs inside a timed region, and nothing is written while training runs: between
epochs the implementations hand over numpy copies (`snapshot`), and every summary is computed and
written after training (`finish`). Computing tensorboardX summaries between epochs measurably slowed
the next epochs' PyTorch training (about 30 % on this 2-core machine; writing one image grid before
training, 10x), so the board opens only once the clocks are done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from spotdiff.record.tensorboard import Board, markdown_table

INPUT_SAMPLES = 32  # images in the input grid
MISCLASSIFIED_SHOWN = 25
EMBEDDED_DIGITS = 500  # test digits in the Projector (features, labels, sprite)
# A parameter larger than this is kept as a fixed, seeded sample of its entries for its histograms
# (the tf-layers net's fc1 has 3.2 M), so that the snapshots held until the end stay small.
HISTOGRAM_SAMPLE = 100_000


class DigitsBoard:
    """One digits cell's TensorBoard content: snapshots kept as numpy during training, written after."""

    def __init__(self, log_dir: str | Path | None, params: Any, data: Mapping[str, np.ndarray]):
        self.log_dir, self.params, self.data = log_dir, params, data
        self._board: Board | None = None
        self._snapshots: list[tuple[int, dict[str, np.ndarray], dict[str, np.ndarray]]] = []
        self._samples: dict[str, np.ndarray] = {}
        n_train = len(data["y_train"])
        self.steps_per_epoch = -(-n_train // params.batch_size)

    @property
    def enabled(self) -> bool:
        return self.log_dir is not None

    @property
    def board(self) -> Board:
        """The writer, opened on first use: only after training."""
        if self._board is None:
            self._board = Board(self.log_dir)
        return self._board

    def epoch_end_step(self, epoch: int) -> int:
        """Global step at the end of epoch `epoch` (1-based)."""
        return epoch * self.steps_per_epoch

    def _kept(self, name: str, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float32).ravel()
        if values.size <= HISTOGRAM_SAMPLE:
            return values.copy()
        if name not in self._samples:
            rng = np.random.default_rng(0)
            self._samples[name] = np.sort(rng.choice(values.size, HISTOGRAM_SAMPLE, replace=False))
        return values[self._samples[name]]

    def snapshot(
        self, epoch: int, parameters: Mapping[str, np.ndarray], gradients: Mapping[str, np.ndarray]
    ) -> None:
        """Keep every parameter and its probe-batch gradient after `epoch` epochs (0: at init)."""
        if self.enabled:
            self._snapshots.append(
                (
                    self.epoch_end_step(epoch),
                    {n: self._kept(n, v) for n, v in parameters.items()},
                    {n: self._kept(n, v) for n, v in gradients.items()},
                )
            )

    def _inputs(self) -> None:
        """The first batch of epoch 1, (N, 28, 28) in [0, 1], as a grid."""
        index = self.data["epoch_order"][0][:INPUT_SAMPLES]
        self.board.images("inputs/train_samples", self.data["x_train"][index][..., None], 0)
        labels = " ".join(str(int(v)) for v in self.data["y_train"][index])
        self.board.text("inputs/train_samples_labels", f"labels, row by row: {labels}")

    def finish(
        self,
        series: Mapping[str, list[float]],
        conv1_kernel: np.ndarray,
        features: np.ndarray,
        predictions: np.ndarray,
    ) -> None:
        """Curves, first-layer filters, misclassified digits and the Projector, then close.

        conv1_kernel: (out, in, 5, 5) neutral layout; features: (N, D) penultimate features of the
        first N test digits; predictions: (n_test,) predicted labels.
        """
        if not self.enabled:
            return
        board, x_test, y_test = self.board, self.data["x_test"], self.data["y_test"]
        self._inputs()
        for step, parameters, gradients in self._snapshots:
            board.parameter_histograms(step, parameters, gradients)
        self._snapshots.clear()
        board.step_scalars({"train/loss": series["train_loss"]})
        for epoch, (loss, accuracy, seconds) in enumerate(
            zip(series["test_loss"], series["test_accuracy"], series["epoch_s"]), start=1
        ):
            step = self.epoch_end_step(epoch)
            board.scalar("test/loss", loss, step)
            board.scalar("test/accuracy", accuracy, step)
            board.scalar("time/epoch_s", seconds, step)
            board.scalar("train/learning_rate", self.params.lr, step)
        last = self.epoch_end_step(len(series["epoch_s"]))
        board.filters("filters/conv1", conv1_kernel, last)
        wrong = np.flatnonzero(predictions != y_test)[:MISCLASSIFIED_SHOWN]
        if len(wrong):
            board.images("test/misclassified", x_test[wrong][..., None], last)
            pairs = ", ".join(f"{int(predictions[i])} ({int(y_test[i])})" for i in wrong)
            board.text("test/misclassified_labels", f"predicted (true), row by row: {pairs}", last)
        n = len(features)
        board.embedding(
            features, labels=[int(v) for v in y_test[:n]], images=x_test[:n], tag="penultimate", step=last
        )
        board.text(
            "run/model",
            markdown_table(
                {
                    "model": self.params.model,
                    "embedded test digits": n,
                    "histograms every": f"{self.steps_per_epoch} steps (one epoch)",
                }
            ),
        )
        self.close()

    def close(self) -> None:
        if self._board is not None:
            self._board.close()
            self._board = None


def embedded_test_images(data: Mapping[str, np.ndarray]) -> np.ndarray:
    """The test digits the Projector shows: the first EMBEDDED_DIGITS, (N, 28, 28)."""
    return data["x_test"][:EMBEDDED_DIGITS]
