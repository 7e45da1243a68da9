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
        "import sys, spotdiff.cli, spotdiff.orchestrate, spotdiff.executors.local, spotdiff.children, "
        "spotdiff.report.terminal, spotdiff.report.html, spotdiff.record.store\n"
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


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """module -> the spotdiff modules it imports, at module level or inside a function (issue 15).

    `from P import X` is an edge to P.X when that is a module, else to P; `import P.Q` to P.Q."""
    root = src.parent

    def name(path: Path) -> str:
        parts = path.relative_to(root).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    paths = {name(path): path for path in src.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in paths}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in paths:
                edges |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths else node.module
                          for a in node.names}
        graph[module] = edges - {module}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def test_no_import_circles():
    """No module imports itself back through others, lazily or not: the shared piece moves down."""
    graph = import_graph()
    found = [" <-> ".join(circle) + "\n    " + "\n    ".join(
        f"{m} -> {', '.join(sorted(graph[m] & set(circle)))}" for m in circle)
        for circle in import_circles(graph)]
    assert not found, "import circles:\n" + "\n".join(found)


def test_import_circles_are_found(tmp_path):
    """The check sees lazy imports, `from spotdiff import X` of a module, and the package root."""
    package = tmp_path / "spotdiff"
    (package / "serve").mkdir(parents=True)
    files = {
        "__init__.py": "def __getattr__(name):\n    from spotdiff import api\n    return api\n",
        "api.py": "from spotdiff.record import environment\n",
        "record/__init__.py": "",
        "record/environment.py": "from spotdiff import __version__\n",
        "cli.py": "from spotdiff.probes import debug_cli\n",
        "probes/__init__.py": "",
        "probes/debug_cli.py": "def debug():\n    from spotdiff.cli import console\n",
        "serve/__init__.py": "",
        "serve/models.py": "def load():\n    from spotdiff.serve.mobile import interpreter_class\n",
        "serve/mobile.py": "import spotdiff.serve.inprocess\n",
        "serve/inprocess.py": "from spotdiff.serve.models import load\n",
        "leaf.py": "from spotdiff import errors\n",
        "errors.py": "",
    }
    for relative, text in files.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(text)
    assert sorted(import_circles(import_graph(package))) == [
        ["spotdiff", "spotdiff.api", "spotdiff.record.environment"],
        ["spotdiff.cli", "spotdiff.probes.debug_cli"],
        ["spotdiff.serve.inprocess", "spotdiff.serve.mobile", "spotdiff.serve.models"],
    ]


# Neutral modules (everything outside tasks/<task>/) never pick a task by name: what differs
# between tasks is declared on its TaskSpec (training, tensorboard, data_parallel_modes,
# debug_graph_targets, report_sections, exportable_models). The registry alone lists the built-ins.
REGISTRY = SRC / "tasks" / "__init__.py"


def test_neutral_modules_name_no_task():
    from spotdiff.tasks import BUILTIN_TASKS

    task_folders = [SRC / "tasks" / name for name in BUILTIN_TASKS]
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path == REGISTRY or any(folder in path.parents for folder in task_folders):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in BUILTIN_TASKS:
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}")
    assert not found, "declare it on the TaskSpec instead:\n" + "\n".join(found)


def public_signatures(path: Path) -> dict[str, tuple[str, ...]]:
    """Top-level public function -> its parameter names, in file order (read with ast, no import)."""
    signatures = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            args = node.args
            signatures[node.name] = tuple(a.arg for a in args.posonlyargs + args.args + args.kwonlyargs)
    return signatures


@pytest.mark.parametrize("task", task_names())
def test_impls_of_a_task_share_order_and_signatures(task):
    """A function two `<prefix>_impl.py` files of a task both define comes in the same place and
    takes the same parameters (a function that differs in kind gets a name of its own)."""
    spec = get_spec(task)
    skeletons = {}
    for name in spec.modes:
        found = importlib.util.find_spec(impl_module(task, frameworks.FRAMEWORKS[name].impl_prefix))
        if found is not None:
            skeletons[name] = public_signatures(Path(found.origin))
    problems = []
    names = list(skeletons)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            order_a = [f for f in skeletons[a] if f in skeletons[b]]
            order_b = [f for f in skeletons[b] if f in skeletons[a]]
            if order_a != order_b:
                problems.append(f"order {a}: {order_a}\n      {b}: {order_b}")
            problems += [f"{f}: {a}{skeletons[a][f]} vs {b}{skeletons[b][f]}"
                         for f in order_a if skeletons[a][f] != skeletons[b][f]]
    assert not problems, f"{task}:\n" + "\n".join(problems)
