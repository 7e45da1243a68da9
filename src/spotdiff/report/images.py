"""The grid of misclassified test images, one row per framework and mode (tasks with images)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from spotdiff.overrides import params_for
from spotdiff.report.cells import cell_label, ordered_cells, task_spec

PER_ROW = 10


def _task_params(results: dict[str, Any], spec) -> Any:
    return params_for(spec, (results.get("experiment") or {}).get("overrides") or {})


def misclassified_figure(results: dict[str, Any], task: str, variant: str) -> Figure | None:
    """Up to 10 misclassified test images per ok cell, titled `predicted (true)`; None if none."""
    spec = task_spec(task)
    cells = [c for c in ordered_cells(results, task)
             if c.get("variant") == variant and c.get("status") == "ok"
             and (c.get("series") or {}).get("misclassified_index")]
    if spec is None or spec.test_images is None or not cells:
        return None
    try:
        images, labels = spec.test_images(_task_params(results, spec), int(cells[0].get("seed") or 0))
    except Exception:  # data no longer available where the report is rendered: leave the grid out
        return None
    fig = Figure(figsize=(PER_ROW * 0.62 + 1.6, 0.78 * len(cells) + 0.5))
    grid = fig.add_gridspec(len(cells), PER_ROW + 1, width_ratios=[2.4] + [1] * PER_ROW,
                            wspace=0.08, hspace=0.35)
    for row, cell in enumerate(cells):
        label_ax = fig.add_subplot(grid[row, 0])
        label_ax.axis("off")
        label_ax.text(1.0, 0.5, cell_label(cell), ha="right", va="center", fontsize=9)
        series = cell["series"]
        shown = zip(series["misclassified_index"][:PER_ROW], series["misclassified_pred"])
        for col, (index, predicted) in enumerate(shown):
            ax = fig.add_subplot(grid[row, col + 1])
            ax.imshow(np.asarray(images[index]), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(f"{predicted} ({labels[index]})", fontsize=8, pad=2)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{task} · {variant} · misclassified test images: predicted (true)",
                 fontsize=10, x=0.02, ha="left")
    return fig
