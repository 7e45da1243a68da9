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

DEVICES = ("auto", "cpu", "gpu")


class Experiment(BaseModel):
    """What the user asked for. Defaults: every task, every framework, every mode and variant."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[str] | None = None  # None: every task (built in, installed, and from task_modules)
    task_modules: list[str] = Field(default_factory=list)  # --task-module files or folders
    frameworks: list[str] = Field(default_factory=lambda: list(fw.FRAMEWORKS))
    modes: list[str] | None = None  # None: every mode of every framework
    variants: list[str] | None = None  # None: every variant of each task
    seed: int = 0
    repeats: int = Field(3, ge=1)
    threads: int = Field(default_factory=lambda: len(os.sched_getaffinity(0)), ge=1)
    device: Literal["auto", "cpu", "gpu"] = "auto"
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
    repeats: int
    threads: int
    device: str
    params: dict[str, Any]
    workers: int = 1  # > 1: data-parallel training in a process group (spotdiff.distributed)
    task_source: dict[str, str] | None = None  # where a --task-module task lives, for the worker
    # This cell's TensorBoard run directory; None: the worker derives it from the run directory
    # (see spotdiff.record.tensorboard.cell_log_dir) and fills it in before the task runs.
    tensorboard_dir: str | None = None


def validate(exp: Experiment) -> Experiment:
    """Check every name against what exists; raise UserError naming the valid choices."""
    for path in exp.task_modules:
        register_task_file(path)
    if exp.tasks is None:
        exp.tasks = task_names()
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
                raise UserError(f"unknown mode {mode!r} for {', '.join(exp.frameworks)}; choose from: {', '.join(valid)}")
    if exp.variants is not None:
        valid = sorted({v for s in specs for v in s.variants})
        for variant in exp.variants:
            if variant not in valid:
                raise UserError(f"unknown variant {variant!r}; choose from: {', '.join(valid)}")
    if exp.address is not None and exp.executor != "ray":
        raise UserError("--address is the Ray cluster to run on: it needs --executor ray")
    cores = len(os.sched_getaffinity(0))
    if exp.executor == "local" and exp.threads > cores:  # a Ray node's cores are checked on the cluster
        raise UserError(f"--threads {exp.threads} is more than the {cores} cores this process may use; "
                        f"use --threads {cores} or fewer (oversubscribed cells time the scheduler)")
    from spotdiff.distributed import check_workers

    check_workers(exp.tasks, exp.workers, exp.threads, exp.overrides)
    known_keys = sorted({k for s in specs for k in s.params.model_fields})
    for key in exp.overrides:
        if key not in known_keys:
            raise UserError(f"unknown --set key {key!r} for {', '.join(exp.tasks)}; choose from: {', '.join(known_keys)}")
    for task in exp.tasks:
        params = task_params(task, exp.overrides)
        prepare = get_spec(task).prepare
        if prepare is not None:
            prepare(params)  # e.g. data files present and valid: fail here, before any cell runs
    return exp


def expand(exp: Experiment) -> list[Cell]:
    """Every (task, framework, mode, variant) the experiment covers, in a stable order."""
    cells = []
    for task in exp.tasks:
        spec = get_spec(task)
        params = task_params(task, exp.overrides).model_dump()
        parallel_modes = data_parallel_modes(task) if exp.workers > 1 else None
        for framework in exp.frameworks:
            for mode in spec.modes.get(framework, ()):
                if exp.modes is not None and mode not in exp.modes:
                    continue
                if parallel_modes is not None and mode not in parallel_modes.get(framework, ()):
                    continue  # --workers N runs the modes the task's data-parallel engines run
                # --variant filters the tasks that have it; a task without it runs all its own.
                wanted = [v for v in spec.variants if exp.variants is None or v in exp.variants]
                for variant in wanted or spec.variants:
                    cells.append(
                        Cell(
                            id=f"{task}-{framework}-{mode}-{variant}-s{exp.seed}" + (f"-w{exp.workers}" if exp.workers > 1 else ""),
                            task=task, framework=framework, mode=mode, variant=variant,
                            seed=exp.seed, repeats=exp.repeats, threads=exp.threads,
                            device=exp.device, params=params, task_source=task_source(task), workers=exp.workers,
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
        raise UserError(f"unknown key(s) in {path}: {', '.join(unknown)}; allowed: {', '.join(sorted((allowed | {'set'}) - {'overrides'}))}")
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
