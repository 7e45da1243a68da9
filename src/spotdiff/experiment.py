"""One validated Experiment (from CLI flags and/or a TOML file) and its expansion into cells."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spotdiff import frameworks as fw
from spotdiff.distributed import data_parallel_modes
from spotdiff.errors import UserError
from spotdiff.overrides import one_line, task_params
from spotdiff.tasks import get_spec, register_task_file, task_names, task_source
from spotdiff.tasks.base import TaskSpec

DEVICES = ("auto", "cpu", "gpu")
MIN_REPEATS = 3  # adaptive repeats never stop before three: a median and a spread need them
PRECISIONS = ("fp32", "bf16")  # fp32: float32 throughout, TF32 off; bf16: each framework's mixed precision


class Experiment(BaseModel):
    """What the user asked for. Defaults: the default run (the post's tasks, in each framework's
    default modes: see `selection`), every framework, every variant, adaptive repeats."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[str] | None = None  # None: the default run's tasks; every task with selection "all"
    task_modules: list[str] = Field(default_factory=list)  # --task-module files or folders
    frameworks: list[str] = Field(default_factory=lambda: list(fw.FRAMEWORKS))
    modes: list[str] | None = None  # None: the default modes (selection "default") or every mode
    variants: list[str] | None = None  # None: every variant of each task
    # default: the tasks with TaskSpec.default_run, each framework in its default modes; all: every
    # task and mode (--all); named: the tasks and modes given, every mode of a named task (as
    # before the default run existed). None: "named" when tasks or modes are given, else "default".
    selection: Literal["default", "all", "named"] | None = None
    seed: int = 0
    # None: adaptive (MIN_REPEATS to max_repeats, see spotdiff.measure.RepeatRule); N: exactly N.
    repeats: int | None = Field(None, ge=1)
    max_repeats: int = Field(10, ge=MIN_REPEATS)
    spread_bound: float = Field(0.05, gt=0, lt=1)  # stop when the median's interval is within +-5 %
    repeat_budget_s: float = Field(4.0, gt=0)  # or once a cell has spent this long timing
    threads: int = Field(default_factory=lambda: len(os.sched_getaffinity(0)), ge=1)
    device: Literal["auto", "cpu", "gpu"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"  # run-wide; tasks declare what they support
    cell_timeout_s: float = Field(900.0, gt=0)
    workers: int = Field(1, ge=1)  # data-parallel workers per cell (spotdiff.distributed)
    executor: Literal["local", "ray"] = "local"  # where cells run: this machine, or a Ray cluster
    address: str | None = None  # Ray cluster address; None: start a local Ray (executor "ray" only)
    overrides: dict[str, Any] = Field(default_factory=dict)  # --set key=value, validated per task


class Cell(BaseModel):
    """One child process: one task in one framework, mode and variant."""

    model_config = ConfigDict(extra="forbid")

    id: str
    task: str
    framework: str
    mode: str
    variant: str
    seed: int
    repeats: int  # the repeats taken; with max_repeats, the fewest (spotdiff.measure.RepeatRule)
    threads: int
    device: str
    params: dict[str, Any]
    precision: str = "fp32"  # the run's --precision; a task without it skips the cell
    workers: int = 1  # > 1: data-parallel training in a process group (spotdiff.distributed)
    max_repeats: int | None = None  # None: exactly `repeats`; larger: adaptive
    spread_bound: float = 0.05
    repeat_budget_s: float = 4.0
    task_source: dict[str, str] | None = None  # where a --task-module task lives, for the worker
    # This cell's TensorBoard run directory; None: the worker derives it from the run directory
    # (see spotdiff.record.tensorboard.cell_log_dir) and fills it in before the task runs.
    tensorboard_dir: str | None = None


def validate(exp: Experiment) -> Experiment:
    """Check every name against what exists; raise UserError naming the valid choices."""
    for path in exp.task_modules:
        register_task_file(path)
    if exp.selection is None:
        exp.selection = "named" if exp.tasks is not None or exp.modes is not None else "default"
    if exp.tasks is None:
        exp.tasks = task_names() if exp.selection == "all" else default_tasks()
    if not exp.tasks:
        raise UserError(f"no task given; choose from: {', '.join(task_names())}")
    exp.tasks = list(dict.fromkeys(exp.tasks))
    specs = [get_spec(t) for t in exp.tasks]
    names = []
    for name in exp.frameworks:
        canonical = fw.canonical(name)
        if canonical is None:
            raise UserError(f"unknown framework {name!r}; choose from: {', '.join(fw.FRAMEWORKS)}")
        names.append(canonical)
    exp.frameworks = list(dict.fromkeys(names))
    if exp.modes is not None:
        valid = sorted({m for s in specs for f in exp.frameworks for m in s.modes.get(f, ())})
        for mode in exp.modes:
            if mode not in valid:
                raise UserError(
                    f"unknown mode {mode!r} for {', '.join(exp.frameworks)}; choose from: {', '.join(valid)}"
                )
    if exp.variants is not None:
        valid = sorted({v for s in specs for v in s.variants})
        for variant in exp.variants:
            if variant not in valid:
                raise UserError(f"unknown variant {variant!r}; choose from: {', '.join(valid)}")
    if exp.address is not None and exp.executor != "ray":
        raise UserError("--address is the Ray cluster to run on: it needs --executor ray")
    cores = len(os.sched_getaffinity(0))
    if exp.executor == "local" and exp.threads > cores:  # a Ray node's cores are checked on the cluster
        raise UserError(
            f"--threads {exp.threads} is more than the {cores} cores this process may use; "
            f"use --threads {cores} or fewer (oversubscribed cells time the scheduler)"
        )
    from spotdiff.distributed import check_workers

    check_workers(exp.tasks, exp.workers, exp.threads, exp.overrides)
    known_keys = sorted({k for s in specs for k in s.params.model_fields})
    for key in exp.overrides:
        if key not in known_keys:
            raise UserError(
                f"unknown --set key {key!r} for {', '.join(exp.tasks)}; choose from: {', '.join(known_keys)}"
            )
    for task in exp.tasks:
        params = task_params(task, exp.overrides)
        prepare = get_spec(task).prepare
        if prepare is not None:
            prepare(params)  # e.g. data files present and valid: fail here, before any cell runs
    return exp


def default_tasks() -> list[str]:
    """The tasks of a plain `spotdiff run`: those whose spec sets `default_run`."""
    return [name for name in task_names() if get_spec(name).default_run]


def default_modes(spec: TaskSpec, framework: str) -> tuple[str, ...]:
    """`framework`'s modes in a default run of `spec`: the spec's `default_modes`, else the modes
    the framework registry marks default, else every mode (a task that chose none runs all)."""
    chosen = spec.default_modes.get(framework)
    if chosen is None:
        chosen = tuple(mode.name for mode in fw.FRAMEWORKS[framework].modes if mode.default)
    modes = spec.modes.get(framework, ())
    return tuple(m for m in modes if m in chosen) or modes


def expand(exp: Experiment) -> list[Cell]:
    """Every (task, framework, mode, variant) the experiment covers, in a stable order."""
    cells = []
    adaptive = exp.repeats is None
    repeat_rule = {
        "repeats": MIN_REPEATS if adaptive else exp.repeats,
        "max_repeats": exp.max_repeats if adaptive else None,
        "spread_bound": exp.spread_bound,
        "repeat_budget_s": exp.repeat_budget_s,
    }
    for task in exp.tasks:
        spec = get_spec(task)
        params = task_params(task, exp.overrides).model_dump()
        parallel_modes = data_parallel_modes(task) if exp.workers > 1 else None
        for framework in exp.frameworks:
            modes = spec.modes.get(framework, ())
            if exp.modes is None and exp.selection == "default":
                modes = default_modes(spec, framework)
            for mode in modes:
                if exp.modes is not None and mode not in exp.modes:
                    continue
                if parallel_modes is not None and mode not in parallel_modes.get(framework, ()):
                    continue  # --workers N runs the modes the task's data-parallel engines run
                # --variant filters the tasks that have it; a task without it runs all its own.
                wanted = [v for v in spec.variants if exp.variants is None or v in exp.variants]
                for variant in wanted or spec.variants:
                    cells.append(
                        Cell(
                            id=f"{task}-{framework}-{mode}-{variant}-s{exp.seed}"
                            + (f"-w{exp.workers}" if exp.workers > 1 else "")
                            + (f"-{exp.precision}" if exp.precision != "fp32" else ""),
                            task=task,
                            framework=framework,
                            mode=mode,
                            variant=variant,
                            seed=exp.seed,
                            **repeat_rule,
                            threads=exp.threads,
                            device=exp.device,
                            precision=exp.precision,
                            params=params,
                            task_source=task_source(task),
                            workers=exp.workers,
                        )
                    )
    if not cells:
        hint = f"; --workers {exp.workers} runs the data-parallel modes only" if exp.workers > 1 else ""
        raise UserError(f"the selection matches no cell: check --frameworks, --modes and --variant{hint}")
    return cells


def parse_set(pairs: list[str]) -> dict[str, str]:
    """`key=value` strings -> dict; values stay strings, each task's model converts them."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def load_toml(path: Path) -> dict[str, Any]:
    """Read an experiment TOML file (the same keys as Experiment, plus [set] for overrides)."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"malformed TOML in {path}: {error}") from None
    if "set" in data:
        data["overrides"] = data.pop("set")
    allowed = set(Experiment.model_fields) | {"out", "overwrite"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UserError(
            f"unknown key(s) in {path}: {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted((allowed | {'set'}) - {'overrides'}))}"
        )
    if not isinstance(data.get("overwrite", False), bool):
        raise UserError(f"overwrite in {path} must be true or false, got {data['overwrite']!r}")
    return data


def build_experiment(config: dict[str, Any]) -> Experiment:
    """A validated Experiment from a dict of settings (CLI flags, TOML, or the Python API);
    any bad value raises UserError with one line naming the valid choices."""
    try:
        exp = Experiment(**config)
    except ValidationError as error:
        raise UserError(f"bad experiment setting: {one_line(error)}") from None
    return validate(exp)
