"""Your own tasks: --task-module files, the spotdiff.tasks entry point, and incomplete tasks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import run_cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_task"
PACKAGE = EXAMPLE / "spotdiff_diabetes"
SMALL = [
    "--repeats",
    "1",
    "--threads",
    "1",
    "--set",
    "steps=30",
    "--set",
    "warmup_steps=5",
    "--set",
    "block_steps=5",
]


def test_task_module_runs_in_every_framework_with_parity(tmp_path):
    out = tmp_path / "run"
    result = run_cli("run", "diabetes", "--task-module", str(PACKAGE), *SMALL, "--out", str(out))
    assert result.returncode == 0, result.stderr
    saved = json.loads((out / "results.json").read_text())
    assert {(c["framework"], c["status"]) for c in saved["cells"]} == {
        ("torch", "ok"),
        ("tensorflow", "ok"),
        ("jax", "ok"),
    }
    assert saved["parity"]["diabetes"]["adam"]["passed"]
    assert (out / "report.html").exists()


def test_installed_example_shows_up_through_its_entry_point(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    listed = subprocess.run(
        [sys.executable, "-m", "spotdiff", "list"], capture_output=True, text=True, env=env
    )
    assert listed.returncode == 0, listed.stderr
    assert "diabetes" in listed.stdout
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "spotdiff",
            "run",
            "diabetes",
            "--frameworks",
            "jax",
            *SMALL,
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text())["cells"][0]["status"] == "ok"


def _copy_task(tmp_path: Path, name: str, files: list[str]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for file in files:
        shutil.copy(PACKAGE / file, folder / file)
    return folder


def test_a_framework_without_implementation_is_skipped_with_the_reason(tmp_path):
    folder = _copy_task(tmp_path, "half_task", ["spec.py", "jax_impl.py"])
    out = tmp_path / "run"
    result = run_cli(
        "run",
        "diabetes",
        "--task-module",
        str(folder),
        "--frameworks",
        "torch,jax",
        *SMALL,
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    cells = {c["framework"]: c for c in json.loads((out / "results.json").read_text())["cells"]}
    assert cells["jax"]["status"] == "ok"
    assert cells["torch"]["status"] == "skipped"
    assert "no PyTorch implementation (half_task.torch_impl)" in cells["torch"]["error"]


def test_a_spec_without_SPEC_is_a_clear_error(tmp_path):
    folder = tmp_path / "empty_task"
    folder.mkdir()
    (folder / "spec.py").write_text("X = 1\n")
    result = run_cli("run", "--task-module", str(folder))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has no SPEC = TaskSpec(...)" in result.stderr


def test_a_spec_naming_an_unknown_framework_is_a_clear_error(tmp_path):
    folder = _copy_task(tmp_path, "odd_task", ["spec.py"])
    spec = folder / "spec.py"
    spec.write_text(spec.read_text().replace('"jax": ("jit",)', '"mxnet": ("jit",)'))
    result = run_cli("list", "--task-module", str(folder))
    assert result.returncode == 2
    assert "unknown framework(s) mxnet" in result.stderr


def test_a_missing_task_module_path(tmp_path):
    result = run_cli("run", "--task-module", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "no task spec file" in result.stderr
