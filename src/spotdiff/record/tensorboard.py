"""TensorBoard event files, one run directory per cell (`spotdiff board` is in record/board.py).

Layout: `<run_dir>/tensorboard/<task>/<framework>-<mode>[-<variant>]`, so
`tensorboard --logdir <run_dir>/tensorboard` shows every framework side by side. The variant is
part of the name when the task has more than one, so its cells never share a directory.

Everything here is framework-neutral (numpy in, tensorboardX out); a framework's own piece (its
model graph) lives in `spotdiff.backends.<framework>.tensorboard`. Cells write after the clock has
stopped: nothing in this module ever runs inside a timed region. See docs/tensorboard.md.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

TENSORBOARD_DIR = "tensorboard"  # under the run directory
HISTOGRAMS_PER_RUN = 20  # parameter and gradient histograms every K = ceil(steps / 20) steps
# `spotdiff board` keeps this many points per scalar tag, not TensorBoard's sample of 1000 (its fast
# loader reads 0 as none, not all).
SCALAR_SAMPLES = 100_000
_writer_count = itertools.count()


def run_name(framework: str, mode: str, variant: str, variants: Sequence[str]) -> str:
    """`torch-eager`, or `torch-eager-manual` when the task has more than one variant."""
    return f"{framework}-{mode}-{variant}" if len(variants) > 1 else f"{framework}-{mode}"


def cell_log_dir(cell: Any, cell_dir: Path, variants: Sequence[str]) -> Path:
    """Where one cell's event files go.

    The runner puts a cell in `<run_dir>/cells/<id>`; its TensorBoard run lives beside the other
    cells' under `<run_dir>/tensorboard/<task>/`. A worker started by hand elsewhere writes under
    its own directory.
    """
    cell_dir = Path(cell_dir).resolve()
    root = cell_dir.parent.parent if cell_dir.parent.name == "cells" else cell_dir
    return root / TENSORBOARD_DIR / cell.task / run_name(cell.framework, cell.mode, cell.variant, variants)


def histogram_steps(total_steps: int, count: int = HISTOGRAMS_PER_RUN) -> list[int]:
    """Step 1, then every K = ceil(total_steps / count) steps: about `count` + 1 histograms."""
    every = max(1, math.ceil(total_steps / count))
    return sorted({1, *range(every, total_steps + 1, every)}) if total_steps >= 1 else []


def step_walltimes(
    start_walltime: float, blocks: Sequence[tuple[int, float]], total_steps: int
) -> np.ndarray:
    """Wall time of each step (index step - 1), rebuilt from the timed blocks of the first repeat.

    `blocks` holds (steps done after the block, seconds the block took); a compile before a fused
    loop is a block of zero steps. Steps inside a block are spread evenly over it. So TensorBoard's
    "relative" axis shows training time as the harness measured it, not when the file was written.
    """
    times = np.full(total_steps, start_walltime, dtype=np.float64)
    done, elapsed_s = 0, 0.0
    for steps_done, seconds in blocks:
        steps_done = min(steps_done, total_steps)
        n = steps_done - done
        if n > 0:
            times[done:steps_done] = start_walltime + elapsed_s + seconds * np.arange(1, n + 1) / n
        elapsed_s += seconds
        done = max(done, steps_done)
    return times


def markdown_table(rows: Mapping[str, Any]) -> str:
    """Two-column markdown (the Text dashboard renders it as a table)."""
    lines = ["| key | value |", "|---|---|"]
    for key, value in rows.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, default=str)
        lines.append(f"| {key} | {str(value).replace('|', '/')} |")
    return "\n".join(lines)


def code_block(text: str) -> str:
    """Text shown verbatim (four-space indented markdown), for jaxprs, HLO and the like."""
    return "\n".join("    " + line for line in text.splitlines())


def _import_tensorboardx() -> Any:
    """tensorboardX, without dragging torch into a TensorFlow or JAX worker.

    tensorboardX's writer imports torch at import time whenever it is installed (only to accept
    torch tensors). A JAX or TensorFlow worker would pay for a second framework (about a second
    and a few hundred MB) and risk clashes between their native libraries; a `None` entry in
    sys.modules makes that one `import torch` fail, which tensorboardX expects and catches.
    """
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        import tensorboardX

        return tensorboardX
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import tensorboardX
    finally:
        del sys.modules["torch"]
    return tensorboardX


class Board:
    """One cell's TensorBoard writer: numpy in, event files out (a thin layer over tensorboardX).

    Per-step scalars are buffered and written at `close()` as one event per step holding every
    tag, which keeps a 2000-step run's files small; histograms are buffered too, so that each
    series reaches the file in step order whatever order they were taken in. Events at step k get
    `step_walltimes[k - 1]`
    when given, else the current time.
    """

    def __init__(self, log_dir: str | Path, step_walltimes: np.ndarray | None = None):
        tbx = _import_tensorboardx()
        from tensorboardX import summary

        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The suffix keeps two writers of one process (a task's own and the worker's) apart.
        self.writer = tbx.SummaryWriter(
            str(self.log_dir),
            flush_secs=3600,
            max_queue=1000,
            filename_suffix=f".{os.getpid()}.{next(_writer_count)}",
        )
        self._summary = summary
        self._walltimes = step_walltimes
        self._step_scalars: dict[int, dict[str, float]] = {}
        self._histograms: list[tuple[int, float, Any]] = []  # (step, walltime, summary)

    def walltime(self, step: int) -> float:
        if self._walltimes is not None and 1 <= step <= len(self._walltimes):
            return float(self._walltimes[step - 1])
        return time.time()

    # scalars
    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, float(value), step, walltime=self.walltime(step))

    def step_scalars(self, values: Mapping[str, Sequence[float]], first_step: int = 1) -> None:
        """Per-step series (tag -> values at first_step, first_step + 1, ...), written at close()."""
        for tag, series in values.items():
            for step, value in enumerate(np.asarray(series, dtype=np.float64).ravel(), start=first_step):
                self._step_scalars.setdefault(step, {})[tag] = float(value)

    def block_times(self, tag: str, blocks: Sequence[tuple[int, float]], scale: float = 1e6) -> None:
        """Seconds per step of each timed block (× scale), at the block's last step."""
        done = 0
        for steps_done, seconds in blocks:
            if steps_done > done:
                self.scalar(tag, seconds / (steps_done - done) * scale, steps_done)
            done = max(done, steps_done)

    # histograms
    def histogram(self, tag: str, values: Any, step: int) -> None:
        """Summarised now (a few hundred bytes kept, not the values), written at close() in step
        order: TensorBoard's data server drops a series' later steps when an earlier one follows."""
        values = np.asarray(values, dtype=np.float64).ravel()
        finite = np.isfinite(values)
        if not finite.all():  # a diverged run: count what is not finite, summarise the rest
            self.scalar(f"nonfinite/{tag}", float(values.size - finite.sum()), step)
            values = values[finite]
            if not values.size:
                return
        try:
            summary = self._summary.histogram(tag, values, self.writer.default_bins)
        except ValueError:  # every value beyond TensorBoard's buckets (about ±1e12): nothing to bin
            self.scalar(f"out_of_range/{tag}", float(np.max(np.abs(values))), step)
            return
        self._histograms.append((step, self.walltime(step), summary))

    def parameter_histograms(
        self, step: int, parameters: Mapping[str, Any], gradients: Mapping[str, Any] | None = None
    ) -> None:
        """`parameters/<name>` and `gradients/<name>` at one step (numpy arrays, any shape)."""
        for name, value in parameters.items():
            self.histogram(f"parameters/{name}", value, step)
        for name, value in (gradients or {}).items():
            self.histogram(f"gradients/{name}", value, step)

    def trajectory_histograms(
        self,
        name: str,
        initial: Any,
        after_step: Sequence[Any],
        gradient_at: Callable[[np.ndarray], np.ndarray],
        steps: Sequence[int] | None = None,
    ) -> None:
        """Histograms of a parameter and its gradient from a recorded trajectory, after training.

        `after_step[k - 1]` is the parameter after step k. The gradient of step k is recomputed by
        `gradient_at(values)` (the framework's autograd, one row per value) at the parameter as it
        was *before* step k: the gradient that step applied.
        """
        values = np.asarray(after_step, dtype=np.float32)
        if not len(values):
            return
        steps = list(steps or histogram_steps(len(values)))
        before = np.concatenate([np.asarray(initial, dtype=np.float32)[None], values[:-1]])
        grads = np.asarray(gradient_at(before[[s - 1 for s in steps]]))
        for step, grad in zip(steps, grads):
            self.parameter_histograms(step, {name: values[step - 1]}, {name: grad})

    # images
    def images(self, tag: str, batch: Any, step: int, dataformats: str = "NHWC") -> None:
        """A batch of images as one grid: float in [0, 1] or uint8; NHWC (TF, Flax) or NCHW (torch)."""
        self.writer.add_images(
            tag, np.asarray(batch), step, walltime=self.walltime(step), dataformats=dataformats
        )

    def filters(self, tag: str, kernels: Any, step: int, zoom: int = 8) -> None:
        """First-layer convolution filters, each scaled to [0, 1] and enlarged `zoom` times.

        `kernels` is (out, in, h, w), PyTorch's layout; pass TF/Flax HWIO kernels as
        `kernels.transpose(3, 2, 0, 1)`. More than one input channel (and not 3) shows their mean.
        """
        k = np.asarray(kernels, dtype=np.float64)
        if k.shape[1] not in (1, 3):
            k = k.mean(axis=1, keepdims=True)
        low = k.min(axis=(1, 2, 3), keepdims=True)
        span = k.max(axis=(1, 2, 3), keepdims=True) - low
        k = (k - low) / np.where(span > 0, span, 1.0)
        k = np.repeat(np.repeat(k, zoom, axis=2), zoom, axis=3)
        self.images(tag, k, step, dataformats="NCHW")

    # embeddings
    def embedding(
        self,
        features: Any,
        labels: Sequence[Any] | None = None,
        images: Any = None,
        tag: str = "features",
        step: int = 0,
    ) -> None:
        """Points for the Projector: features (N, D), labels (N,), sprite images (N, H, W[, C]) in [0, 1]."""
        label_img = None
        if images is not None:
            label_img = np.asarray(images, dtype=np.float32)
            if label_img.ndim == 3:
                label_img = label_img[:, None]  # (N, H, W) -> (N, 1, H, W)
            elif label_img.shape[-1] in (1, 3):
                label_img = label_img.transpose(0, 3, 1, 2)  # NHWC -> NCHW
        metadata = [str(label) for label in labels] if labels is not None else None
        self.writer.add_embedding(
            np.asarray(features, dtype=np.float32),
            metadata=metadata,
            label_img=label_img,
            global_step=step,
            tag=tag,
        )

    # text and graphs
    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        self.writer.add_text(tag, markdown, step, walltime=self.walltime(step) if step else time.time())

    def graph_def(self, graph_def: Any) -> None:
        """A GraphDef for the Graphs dashboard (tensorboardX's proto, or any with the same schema)."""
        from tensorboardX.proto import event_pb2, graph_pb2

        if not isinstance(graph_def, graph_pb2.GraphDef):  # e.g. TensorFlow's own GraphDef class
            graph_def = graph_pb2.GraphDef.FromString(graph_def.SerializeToString())
        self.writer.file_writer.add_event(event_pb2.Event(graph_def=graph_def.SerializeToString()))

    def close(self) -> None:
        file_writer = self.writer.file_writer
        for step in sorted(self._step_scalars):
            values = self._step_scalars[step]
            summary = self._summary.Summary(
                value=[self._summary.scalar(tag, value).value[0] for tag, value in values.items()]
            )
            file_writer.add_summary(summary, step, walltime=self.walltime(step))
        self._step_scalars.clear()
        for step, walltime, summary in sorted(self._histograms, key=lambda item: item[0]):
            file_writer.add_summary(summary, step, walltime=walltime)
        self._histograms.clear()
        self.writer.close()

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class GraphBuilder:
    """A GraphDef for the Graphs dashboard, node by node, from a framework's own graph capture.

    JAX (a jaxpr) and PyTorch (torch.export) describe their nodes here; TensorFlow has a GraphDef
    of its own. Names with `/` become collapsible groups in the dashboard.
    """

    def __init__(self) -> None:
        from tensorboardX.proto import graph_pb2

        self.graph = graph_pb2.GraphDef()
        self._taken: set[str] = set()

    def node(
        self,
        name: str,
        op: str,
        inputs: Sequence[str] = (),
        shape: Sequence[int] | None = None,
        dtype: str | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> str:
        """Add a node; returns its name, made unique with a `_<n>` suffix when already taken."""
        from tensorboardX.proto import attr_value_pb2, tensor_shape_pb2

        name = re.sub(r"[^A-Za-z0-9_.\-/]", "_", name)  # the characters TensorFlow allows in node names
        unique, n = name, 1
        while unique in self._taken:
            unique, n = f"{name}_{n}", n + 1
        self._taken.add(unique)
        node = self.graph.node.add(name=unique, op=op, input=list(inputs))
        if shape is not None:
            dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in shape]
            shapes = attr_value_pb2.AttrValue.ListValue(shape=[tensor_shape_pb2.TensorShapeProto(dim=dims)])
            node.attr["_output_shapes"].CopyFrom(attr_value_pb2.AttrValue(list=shapes))
        for key, value in {**({"dtype": dtype} if dtype else {}), **(attrs or {})}.items():
            node.attr[key].CopyFrom(attr_value_pb2.AttrValue(s=str(value).encode()))
        return unique


def fresh_log_dir(path: Path) -> Path:
    """Empty a cell's run directory, so re-running into the same run dir never mixes two runs."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_run_text(
    board: Board, cell: Any, environment: Mapping[str, Any], metrics: Mapping[str, Any]
) -> None:
    """The experiment (this cell and its parameters), the environment and the final metrics as text."""
    fields = {k: v for k, v in cell.model_dump().items() if k not in ("params", "task_source")}
    board.text(
        "run/experiment", markdown_table(fields) + "\n\n**parameters**\n\n" + markdown_table(cell.params)
    )
    versions = environment.get("versions", {})
    settings = environment.get("settings", {})
    board.text("run/environment", markdown_table({**versions, **settings, "python": sys.version.split()[0]}))
    board.text("run/metrics", markdown_table(dict(metrics)))


def write_step_runner_curves(
    board: Board, series: Mapping[str, Sequence[float]], blocks: Sequence[tuple[int, float]]
) -> None:
    """`train/<series>` at every step and `time/step_us` per timed block, for build_runner tasks."""
    board.step_scalars({f"train/{name}": values for name, values in series.items()})
    board.block_times("time/step_us", blocks)


def write_series(board: Board, series: Mapping[str, Sequence[float]]) -> None:
    """`series/<name>` at points 1..n for every numeric series, for own-loop tasks that write no
    board of their own (each series on its own axis: per batch, per epoch, ...)."""
    for name, values in series.items():
        values = np.asarray(values)
        if values.size and np.issubdtype(values.dtype, np.number):
            board.step_scalars({f"series/{name}": values})
