"""Child process entry point: run ONE cell with ONE framework and stream events.

    python -m spotdiff.worker CELL_JSON EVENTS_JSONL

Started by `spotdiff.children`, which pinned CPU affinity and every thread variable before this
module (or numpy) was imported, identically for every framework; the framework's own pools are
sized by its `backends/<fw>/env.configure` right after its import.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from spotdiff import children
from spotdiff.children import peak_rss_mb
from spotdiff.devices import device_label
from spotdiff.errors import UserError
from spotdiff.events import EventWriter
from spotdiff.experiment import Cell
from spotdiff.overrides import params_for
from spotdiff.record import tensorboard


def pin_process(cell: Cell) -> dict:
    """The pin `spotdiff.children` applied at start (cores, threads, thread variables), checked
    against the cell, and the device visibility, set before the framework is imported."""
    pinned = children.pinned()
    if pinned.get("threads") != cell.threads:  # started by hand: pin here (numpy may be loaded)
        pinned = children.pin(children.Pin.first(cell.threads).cores, cell.threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if cell.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["JAX_PLATFORMS"] = "cpu"
    recorded = {key: pinned[key] for key in ("cpu_affinity", "threads", "numpy_loaded_before_pin")}
    return {
        **recorded,
        "dtype": "float32",
        "precision": cell.precision,
        "compile_cache": "cold (empty per cell)",
    }


def run_cell(cell: Cell, out: EventWriter, cell_dir: Path) -> None:
    from spotdiff import frameworks, measure
    from spotdiff.tasks import contract, get_spec, impl_module, restore_task_source

    if cell.task_source:
        restore_task_source(cell.task, cell.task_source)
    pinned = pin_process(cell)
    if cell.workers > 1:  # this process becomes the launcher of a data-parallel process group
        from spotdiff.distributed.cell import run_cell as run_data_parallel

        return run_data_parallel(cell, out, cell_dir, pinned["cpu_affinity"])
    framework = frameworks.FRAMEWORKS[cell.framework]
    os.environ.update(framework.mode_env(cell.mode))  # e.g. KERAS_BACKEND: read when it is imported
    start = time.perf_counter()
    env = importlib.import_module(f"spotdiff.backends.{framework.name}.env")  # imports the framework
    import_s = time.perf_counter() - start
    settings = env.configure(cell.threads, cell.seed, cell.device)
    if cell.device == "gpu" and "cpu" in str(settings.get("device", "")).lower():
        settings["device_note"] = f"--device gpu: {framework.label} sees no GPU here, ran on the CPU"
    settings["device_label"] = device_label(cell.device, settings.get("device"))  # "cpu (auto: no GPU)"
    out.emit("environment", versions=env.versions(), settings={**pinned, **settings})

    spec = get_spec(cell.task)
    if cell.tensorboard_dir is None:
        log_dir = tensorboard.cell_log_dir(cell, cell_dir, spec.variants)
        cell = cell.model_copy(update={"tensorboard_dir": str(log_dir)})
    tensorboard.fresh_log_dir(Path(cell.tensorboard_dir))
    params = params_for(spec, cell.params)
    data = spec.build_data(params, cell.seed)
    impl = importlib.import_module(impl_module(cell.task, framework.impl_prefix))
    missing = contract.missing_functions(spec.training, impl)
    if missing:
        raise UserError(
            f"{impl.__name__} has no {', '.join(missing)}(), which a task with "
            f"training={spec.training!r} needs (see spotdiff.tasks.contract)"
        )
    artifacts: dict[str, str] = {}
    runner = timing = None
    if spec.training == "loop":  # the task owns its loop; with tensorboard="own" it writes the board
        metrics, series, artifacts = contract.CellOutcome(*impl.run(cell, params, data, cell_dir))
    else:
        runner = impl.build_runner(cell.mode, cell.variant, params, data, cell.threads)
        plan = measure.TimingPlan(
            steps=params.steps,
            repeats=cell.repeats,
            block_steps=params.block_steps,
            warmup_steps=params.warmup_steps,
            max_repeats=cell.max_repeats,
            spread_bound=cell.spread_bound,
            budget_s=cell.repeat_budget_s,
        )
        train_start_walltime = time.time()
        timing = measure.time_training(runner, plan, at_trajectory_end=runner.final_metrics)
        metrics = {**timing.metrics(), **timing.trajectory_end}  # the end of the recorded trajectory
        series = timing.series
    metrics["import_s"] = import_s
    metrics["peak_rss_mb"] = peak_rss_mb()
    metrics["peak_device_mb"] = env.peak_device_memory_mb()
    metrics.update(spec.derive_metrics(metrics, series, params))
    # TensorBoard after every clock and after peak RSS: writing it is never part of a measurement.
    tensorboard_start = time.perf_counter()
    walltimes = (
        tensorboard.step_walltimes(train_start_walltime, timing.blocks, params.steps) if timing else None
    )
    with tensorboard.Board(cell.tensorboard_dir, walltimes) as board:
        environment = {"versions": env.versions(), "settings": {**pinned, **settings}}
        tensorboard.write_run_text(board, cell, environment, metrics)
        if timing is not None:
            tensorboard.write_step_runner_curves(board, series, timing.blocks)
            if spec.tensorboard == "own":
                impl.write_tensorboard(runner, board, series)
        elif spec.tensorboard == "series":  # a loop task that leaves its board to the worker
            tensorboard.write_series(board, series)
    metrics["tensorboard_s"] = time.perf_counter() - tensorboard_start
    out.emit("metrics", values=metrics)
    for name, values in series.items():
        out.emit("series", name=name, values=values)
    for name, path in artifacts.items():  # files the cell wrote, for the parent to read (numpy only)
        out.emit("artifact", name=name, path=str(Path(cell_dir, path).resolve()))


def main(argv: list[str]) -> int:
    cell_path, events_path = Path(argv[0]), Path(argv[1])
    out = EventWriter(events_path)
    try:
        cell = Cell.model_validate_json(cell_path.read_text())
        run_cell(cell, out, events_path.parent)
    except BaseException as error:  # every failure becomes an event the runner can report
        lines = str(error).strip().splitlines()  # the runner prefixes the type: "Type: message"
        out.emit(
            "error",
            type=type(error).__name__,
            message=lines[0] if lines else "(no message)",
            traceback=traceback.format_exc()[-4000:],
        )
        out.close()
        return 1
    out.emit("done")
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
