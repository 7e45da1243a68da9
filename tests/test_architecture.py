"""The promises of the layout: the parent imports no framework; every task has every impl."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from spotdiff import frameworks
from spotdiff.tasks import get_spec, impl_module, task_names

SRC = Path(__file__).resolve().parents[1] / "src" / "spotdiff"


def test_parent_side_imports_no_framework():
    code = (
        "import sys, spotdiff.cli, spotdiff.orchestrate, spotdiff.executors.local, spotdiff.children, spotdiff.report.terminal, "
        "spotdiff.report.html, spotdiff.record.store\n"
        "from spotdiff.tasks import get_spec, task_names\n"
        "[get_spec(t) for t in task_names()]\n"
        "bad = [m for m in ('torch', 'tensorflow', 'jax', 'keras', 'flax', 'optax') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# Functions every implementation of a task must have, in each framework (the diffable skeleton).
SHARED_FUNCTIONS = {
    "exponent": {"loss_fn", "make_optimizer", "build_runner"},
    "digits": {"build_model", "evaluate", "parity_probe", "run"},
    "sequences": {"build_model", "build_runner", "parity_probe", "run"},
    "trees": {"build_model", "build_runner", "parity_probe", "run"},
}


@pytest.mark.parametrize("task", task_names())
def test_every_task_has_every_framework_impl_with_the_same_functions(task):
    spec = get_spec(task)
    function_sets = {}
    for name in spec.modes:
        module = impl_module(task, frameworks.FRAMEWORKS[name].impl_prefix)
        path = Path(importlib.util.find_spec(module).origin)
        tree = ast.parse(path.read_text())
        function_sets[name] = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    # Frameworks whose modes each spec lists implement every task; one that declares its own modes
    # (Keras) joins the tasks that have its impl file, and then has the same skeleton.
    assert {name for name, f in frameworks.FRAMEWORKS.items() if not f.modes} <= set(spec.modes)
    shared = set.intersection(*function_sets.values())
    assert "run" in shared or "build_runner" in shared  # the worker's entry point, everywhere
    assert SHARED_FUNCTIONS.get(task, set()) <= shared


def test_no_module_shadows_a_framework():
    for path in SRC.rglob("*.py"):
        assert path.stem not in ("torch", "tensorflow", "jax"), path


def test_one_process_boundary_pins_and_finds_ports():
    """CPU pinning and free-port helpers live in spotdiff/children.py only (issue 15)."""
    import re

    pattern = re.compile(r"sched_setaffinity|def \w*free_port|preexec_fn|start_new_session")
    found = [f"{path.relative_to(SRC)}:{number}: {line.strip()}"
             for path in SRC.rglob("*.py") if path.name != "children.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "\n".join(found)
