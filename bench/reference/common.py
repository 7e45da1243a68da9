"""What the reference scripts share with spotdiff: only the data (the same 28x28 digits) and the
way results are printed. Everything else in them is written the way each framework's own MNIST
example is written."""

from __future__ import annotations

import json
import sys

import numpy as np

from spotdiff.tasks.digits.data import load_digits_28


def load(seed: int = 0) -> dict[str, np.ndarray]:
    return load_digits_28(seed)


def report(epoch_s: list[float], n_train: int, accuracy: float) -> None:
    steady = epoch_s[1:] or epoch_s
    json.dump({"steady_images_per_s": n_train * len(steady) / sum(steady), "first_epoch_s": epoch_s[0],
               "test_accuracy": accuracy}, sys.stdout)
    print()
