"""The tree is clean under ruff (pyproject.toml: pycodestyle, pyflakes, import order, 110 columns)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINTED = ("src", "tests", "bench", "examples")


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_finds_nothing():
    result = ruff("check", "--no-cache", "--output-format", "concise", *LINTED)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_ruff_applies_the_projects_rules(tmp_path):
    """The config is the project's: an unused import, an unused variable and a 111-column line fail."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\n\ndef f():\n    unused = 1\n    return '" + "x" * 100 + "'\n")
    result = ruff(
        "check",
        "--no-cache",
        "--output-format",
        "concise",
        "--config",
        str(ROOT / "pyproject.toml"),
        str(bad),
    )
    assert result.returncode == 1
    for code in ("F401", "F841", "E501"):
        assert f"{bad.name}:" in result.stdout and code in result.stdout, result.stdout
