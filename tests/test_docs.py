"""The documentation builds with MkDocs in strict mode (broken links or API references fail), and every
source file the pages and the README name exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_strict_build(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("time_training", "TaskSpec", "build_experiment", "Results"):
        assert name in api, name


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ROOTED = re.compile(r"(?<![\w./~-])((?:src|spotdiff|tests|bench|examples)/[\w./<>*-]*\w/?)")
IN_BACKTICKS = re.compile(r"`([\w./<>*-]+\.py)`")
PLACEHOLDERS = {"<fw>": ("torch", "tensorflow", "jax"), "<prefix>": ("torch", "tf", "jax")}
NEVER_MODULES = {"torch.py", "tensorflow.py", "jax.py"}  # named as names a module must not take
SEARCHED = ("src", "tests", "bench", "examples")


def _expand(path: str) -> list[str]:
    """`backends/<fw>/weights.py` -> one path per framework; other paths as they are."""
    for mark, values in PLACEHOLDERS.items():
        if mark in path:
            return [p for value in values for p in _expand(path.replace(mark, value))]
    return [path]


def _exists(path: str) -> bool:
    """A path a page names: rooted (src/, tests/...), package-relative (`tasks/...py`) or a bare file name."""
    if path.startswith("spotdiff/"):
        path = "src/" + path
    if path.split("/")[0] in SEARCHED:
        return any(ROOT.glob(path.rstrip("/"))) if "*" in path else (ROOT / path).exists()
    if "/" in path:
        return (ROOT / "src" / "spotdiff" / path).exists()
    return any(found for top in SEARCHED for found in (ROOT / top).rglob(path))


def named_paths(text: str) -> set[str]:
    """Every source path written in a page: rooted ones anywhere, `*.py` names in backticks."""
    names = set(ROOTED.findall(text)) | set(IN_BACKTICKS.findall(text))
    return {p for name in names - NEVER_MODULES for p in _expand(name)}


def layout_paths(text: str) -> list[str]:
    """The files and folders of the indented tree under "## Layout" (docs/architecture.md)."""
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    stack: list[tuple[int, list[str]]] = []
    found: list[str] = []
    for line in block.splitlines():
        names = [n for n in line.split("#", 1)[0].split() if n != "..."]
        if not names:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parents = stack[-1][1] if stack else [""]
        paths = [f"{parent}{name}" for parent in parents for name in names]
        found += paths
        stack.append((indent, paths))
    return found


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_every_source_path_a_page_names_exists(page):
    missing = sorted(p for p in named_paths(page.read_text(encoding="utf-8")) if not _exists(p))
    assert not missing, f"{page.name} names files that do not exist: {missing}"


def test_the_architecture_layout_lists_only_what_exists():
    paths = layout_paths((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"))
    assert "src/spotdiff/tasks/exponent/spec.py" in paths and "bench/" in paths  # the tree was read
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"docs/architecture.md lists files that do not exist: {missing}"


def test_the_path_check_can_fail():
    assert named_paths("see `src/spotdiff/nowhere.py`, `tasks/x/y.py` and `backends/<fw>/env.py`") >= {
        "src/spotdiff/nowhere.py", "tasks/x/y.py", "backends/jax/env.py"}
    assert not _exists("src/spotdiff/nowhere.py") and not _exists("tasks/x/y.py") and not _exists("gone.py")
    assert _exists("backends/jax/env.py") and _exists("measure.py") and _exists("spotdiff/cli.py")
    assert "~/.spotdiff/history.sqlite" not in str(named_paths("`~/.spotdiff/history.sqlite`"))


def test_figures_quoted_from_benchmarks_are_in_benchmarks():
    """A paragraph that points at BENCHMARKS.md quotes its figures; none may be retyped differently."""
    benchmarks = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    quoted = {}
    for page in DOCS:
        for paragraph in page.read_text(encoding="utf-8").split("\n\n"):
            if "BENCHMARKS.md" in paragraph:
                for figure in re.findall(r"(?<![\w.])\d[\d,]*\.\d+(?![\w.])", paragraph):
                    quoted.setdefault(figure, page.name)
    assert "README.md" in quoted.values()  # README's JAX eager / jit / fused figures are among them
    wrong = {figure: page for figure, page in quoted.items() if figure not in benchmarks}
    assert not wrong, f"figures not found in BENCHMARKS.md: {wrong}"
