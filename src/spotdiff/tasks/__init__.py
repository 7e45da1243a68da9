"""Task registry: task name -> neutral spec. Implementations are loaded only inside workers.

Tasks come from three places:
- built in (below);
- installed packages, through the `spotdiff.tasks` entry-point group: `name = "package.spec"`;
- a file, with `--task-module path/to/spec.py` (or its folder): the implementations sit beside it.

A task's implementations are the modules `<package>.<prefix>_impl` beside its spec module, with
`prefix` = torch, tf, jax (see spotdiff.frameworks).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from pydantic import BaseModel

from spotdiff.errors import UserError
from spotdiff.tasks.base import TaskSpec

BUILTIN_TASKS = {
    "exponent": "spotdiff.tasks.exponent.spec",
    "digits": "spotdiff.tasks.digits.spec",
    "sequences": "spotdiff.tasks.sequences.spec",
    "trees": "spotdiff.tasks.trees.spec",
    "gpt": "spotdiff.tasks.gpt.spec",
}
TASK_MODULES = BUILTIN_TASKS  # the name other modules have used for the built-ins
DEFAULT_TASK = next(iter(BUILTIN_TASKS))  # the smallest, for a tool that needs one (spotdiff debug)
ENTRY_POINT_GROUP = "spotdiff.tasks"

# Tasks registered from files in this process: name -> (spec module path, sys.path entry)
_file_tasks: dict[str, tuple[str, str]] = {}


def _entry_point_tasks() -> dict[str, str]:
    found = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found[entry.name] = entry.value.split(":")[0]
    return found


def task_modules() -> dict[str, str]:
    """Every known task name -> its spec module path (built-ins win over plug-ins of the same name)."""
    modules = {**_entry_point_tasks(), **{n: m for n, (m, _) in _file_tasks.items()}}
    modules.update(BUILTIN_TASKS)
    return modules


def task_names() -> list[str]:
    return list(BUILTIN_TASKS) + sorted(set(task_modules()) - set(BUILTIN_TASKS))


def _module_for_file(path: Path) -> tuple[str, str]:
    """(module path, sys.path entry) for a spec file or a task folder."""
    path = path.resolve()
    if path.is_dir():
        path = path / "spec.py"
    if not path.is_file() or path.suffix != ".py":
        raise UserError(f"--task-module: no task spec file at {path} (expected a spec.py or its folder)")
    folder = path.parent
    if (folder / "__init__.py").exists():  # a package: import it by name from its parent folder
        return f"{folder.name}.{path.stem}", str(folder.parent)
    return path.stem, str(folder)


def register_task_file(path: str | Path) -> str:
    """Load a task spec from a file, check it, and make it runnable by name; returns the name."""
    module_name, search_path = _module_for_file(Path(path))
    if search_path not in sys.path:
        sys.path.insert(0, search_path)
    cached = sys.modules.get(module_name)
    if cached is not None and not str(getattr(cached, "__file__", "")).startswith(search_path):
        del sys.modules[module_name]  # another task's module of the same name
    module = _import(module_name, f"--task-module {path}")
    spec = _checked_spec(module, None, module_name)
    _file_tasks[spec.name] = (module_name, search_path)
    return spec.name


def task_source(name: str) -> dict[str, str] | None:
    """What a worker needs to find a file-registered task again (None for other tasks)."""
    if name in _file_tasks and name not in BUILTIN_TASKS:
        module, search_path = _file_tasks[name]
        return {"module": module, "path": search_path}
    return None


def restore_task_source(name: str, source: dict[str, str]) -> None:
    """In a worker: re-register a file task from `task_source()`'s answer."""
    if source["path"] not in sys.path:
        sys.path.insert(0, source["path"])
    _file_tasks[name] = (source["module"], source["path"])


def _import(module_name: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as error:  # a plug-in's own bug must not become our traceback
        raise UserError(
            f"cannot import task {what} ({module_name}): {type(error).__name__}: {error}"
        ) from None


def _checked_spec(module: ModuleType, name: str | None, module_name: str) -> TaskSpec:
    spec = getattr(module, "SPEC", None)
    where = f"task module {module_name}"
    if not isinstance(spec, TaskSpec):
        raise UserError(f"{where} has no SPEC = TaskSpec(...) (found {type(spec).__name__})")
    if name is not None and spec.name != name:
        raise UserError(f"{where}: SPEC.name is {spec.name!r} but it is registered as {name!r}")
    if not (isinstance(spec.params, type) and issubclass(spec.params, BaseModel)):
        raise UserError(f"{where}: SPEC.params must be a pydantic model class")
    if not spec.variants:
        raise UserError(f"{where}: SPEC.variants is empty")
    if not isinstance(spec.modes, dict) or not all(isinstance(m, tuple) and m for m in spec.modes.values()):
        raise UserError(f"{where}: SPEC.modes must map a framework name to a non-empty tuple of modes")
    from spotdiff.frameworks import FRAMEWORKS

    unknown = sorted(set(spec.modes) - set(FRAMEWORKS))
    if unknown:
        raise UserError(
            f"{where}: SPEC.modes names unknown framework(s) {', '.join(unknown)}; "
            f"known: {', '.join(FRAMEWORKS)}"
        )
    for field in ("build_data", "derive_metrics", "parity"):
        if not callable(getattr(spec, field)):
            raise UserError(f"{where}: SPEC.{field} must be callable")
    _check_capabilities(spec, where)
    return spec


def _check_capabilities(spec: TaskSpec, where: str) -> None:
    """One-line UserError for a capability declared wrongly (see TaskSpec and tasks.contract)."""
    from spotdiff.tasks.base import REPORT_SECTIONS

    if spec.training not in ("steps", "loop"):
        raise UserError(
            f"{where}: SPEC.training is {spec.training!r}; use 'steps' (build_runner) or 'loop' (run)"
        )
    allowed = ("steps", "own") if spec.training == "steps" else ("series", "own")
    if spec.tensorboard not in allowed:
        raise UserError(
            f"{where}: SPEC.tensorboard is {spec.tensorboard!r}; with training={spec.training!r} "
            f"use one of {', '.join(map(repr, allowed))}"
        )
    for field in ("data_parallel_modes", "debug_graph_targets", "exportable_models"):
        frameworks = getattr(spec, field)
        stray = sorted(set(frameworks) - set(spec.modes))
        if stray:
            raise UserError(
                f"{where}: SPEC.{field} names framework(s) {', '.join(stray)} that SPEC.modes lacks"
            )
    for framework, modes in spec.data_parallel_modes.items():
        if not set(modes) <= set(spec.modes[framework]):
            raise UserError(
                f"{where}: SPEC.data_parallel_modes[{framework!r}] names modes outside SPEC.modes"
            )
    unknown = sorted(set(spec.report_sections) - set(REPORT_SECTIONS))
    if unknown:
        raise UserError(
            f"{where}: SPEC.report_sections has unknown {', '.join(unknown)}; "
            f"known: {', '.join(REPORT_SECTIONS)}"
        )


def get_spec(name: str) -> TaskSpec:
    """The spec of task `name`; a UserError naming the valid tasks when unknown or malformed."""
    modules = task_modules()
    if name not in modules:
        raise UserError(f"unknown task {name!r}; choose from: {', '.join(task_names())}")
    return _with_declared_modes(_checked_spec(_import(modules[name], name), name, modules[name]))


def _with_declared_modes(spec: TaskSpec) -> TaskSpec:
    """`spec` plus the modes of frameworks that declare their own (spotdiff.frameworks Mode), for
    each such framework the spec does not list and whose `<prefix>_impl.py` exists beside it."""
    from spotdiff.frameworks import FRAMEWORKS

    modes, mode_help = dict(spec.modes), dict(spec.mode_help)
    for name, framework in FRAMEWORKS.items():
        if framework.modes and name not in modes and has_impl(spec.name, framework.impl_prefix):
            modes[name] = tuple(mode.name for mode in framework.modes)
            mode_help.update({(name, mode.name): mode.help for mode in framework.modes})
    return spec if modes == spec.modes else dataclasses.replace(spec, modes=modes, mode_help=mode_help)


def impl_module(task: str, impl_prefix: str) -> str:
    """The module path of one framework's implementation of `task`."""
    package = task_modules()[task].rpartition(".")[0]
    return f"{package}.{impl_prefix}_impl" if package else f"{impl_prefix}_impl"


def has_impl(task: str, impl_prefix: str) -> bool:
    """Whether the implementation module exists, found without importing it (or its framework)."""
    try:
        return importlib.util.find_spec(impl_module(task, impl_prefix)) is not None
    except (ImportError, ValueError):
        return False
