"""Shared fixtures: an isolated SPOTDIFF_HOME, a CLI runner that runs `python -m spotdiff`, and
hand-made results.json data for the report tests."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

# --- Two test processes (pytest-xdist, `-n auto` in pyproject.toml) -------------------------------
# Every cell runs pinned to the cores its parent may use (spotdiff.children.Pin), one at a time, so a
# single pytest process leaves all but one core idle. Each xdist worker is pinned to its own share
# of the machine's cores at start, so its children (and theirs) never share a core with the other
# worker's. Whole test files run in one worker (a module fixture is built once); files that share a
# session fixture run in the same worker (SHARED_RUNS), and the longest groups start first.
MACHINE_CORES_VAR = "SPOTDIFF_TEST_MACHINE_CORES"

# Files that use one session fixture (a trained run) go to one worker, so it is built once.
SHARED_RUNS = {
    "exponent-matrix": ("test_exponent", "test_tensorboard"),
    "digits-models": ("test_digits", "test_serve", "test_serve_grpc", "test_serve_logits", "test_loadtest"),
}
# Groups by their serial time on a 2-core machine (seconds, from --durations), longest first: a
# worker takes the next group in this order when it runs dry, so the long ones do not start last.
# Groups not named here follow, in collection order.
LONGEST_FIRST = ("digits-models", "test_gpt", "test_keras", "test_port_examples", "test_where",
                 "exponent-matrix", "test_distributed", "test_where_planted", "test_port", "test_defaults",
                 "test_where_keras", "test_sequences", "test_debug", "test_ray_executor", "test_notebook",
                 "test_trees", "test_custom_task", "test_failures")


def machine_cores() -> list[int]:
    """Every core the test session may use (a worker is pinned to its share of them)."""
    saved = os.environ.get(MACHINE_CORES_VAR)
    return [int(c) for c in saved.split(",")] if saved else sorted(os.sched_getaffinity(0))


def _worker_share(cores: list[int]) -> list[int] | None:
    """This xdist worker's cores: gw<k> of n takes every n-th core from the k-th (with more workers
    than cores, core k mod cores: workers then share cores evenly); None outside xdist."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not worker or not count:
        return None
    index, count = int(worker.removeprefix("gw")), int(count)
    return cores[index::count] if count <= len(cores) else [cores[index % len(cores)]]


def pytest_configure(config) -> None:
    cores = machine_cores()
    os.environ[MACHINE_CORES_VAR] = ",".join(map(str, cores))
    share = _worker_share(cores)
    if share:
        os.sched_setaffinity(0, share)


def _group(nodeid: str) -> str:
    """The xdist work unit of a test: its file, or the shared run its file uses."""
    module = Path(nodeid.split("::", 1)[0]).stem
    return next((name for name, files in SHARED_RUNS.items() if module in files), module)


@pytest.hookimpl(trylast=True)  # after pytest's own reordering: groups longest first, files in order
def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item.nodeid), len(rank)))  # stable: the same in every worker


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest -p no:xdist still loads this file
def pytest_xdist_make_scheduler(config, log):
    """xdist's file-by-file scheduling, with SHARED_RUNS' files as one unit (xdist's own groups,
    --dist loadgroup, rename test ids in a way pytest 9.2 no longer reads)."""
    from xdist.scheduler import LoadScopeScheduling

    class SharedRunScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return SharedRunScheduling(config, log)


@pytest.fixture
def whole_machine():
    """The test runs on every core of the machine (its worker's pin lifted until it ends)."""
    share = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, machine_cores())
    yield machine_cores()
    os.sched_setaffinity(0, share)


@pytest.fixture(scope="session", autouse=True)
def spotdiff_home(tmp_path_factory) -> Path:
    """History goes to a temporary store for the whole session, never to ~/.spotdiff."""
    home = tmp_path_factory.mktemp("spotdiff-home")
    previous = os.environ.get("SPOTDIFF_HOME")
    os.environ["SPOTDIFF_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("SPOTDIFF_HOME", None)
    else:
        os.environ["SPOTDIFF_HOME"] = previous


@pytest.fixture(scope="session", autouse=True)
def shared_jax_compiles(tmp_path_factory):
    """Every `where` and `port` recorder of the session shares one JAX compilation cache (as a user's
    JAX_COMPILATION_CACHE_DIR would): the same small steps are recorded by many tests, and a loaded
    executable is the compiled one. Cells still compile cold (spotdiff turns the cache off in them)."""
    from spotdiff.locate.run import shared_compile_cache

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)  # this session's, not the shell's
        for name, value in shared_compile_cache(tmp_path_factory.mktemp("jax-cache")).items():
            patch.setenv(name, value)
        yield


# Real runs shared by several test files (session scope: each child starts once per test session).
EXPONENT_STEPS = 300  # long enough to converge towards the true phi, and several timed blocks
NATIVE = ["torch", "tensorflow", "jax"]  # Keras on every backend: tests/test_keras.py


@pytest.fixture(scope="session")
def exponent_matrix_run(tmp_path_factory) -> tuple[dict, Path]:
    """Exponent's whole native matrix (18 cells) at EXPONENT_STEPS, two repeats, indexed and rendered:
    tests/test_exponent.py checks its metrics, parity and history, tests/test_tensorboard.py its
    event files and `spotdiff board`."""
    from spotdiff.experiment import build_experiment
    from spotdiff.orchestrate import run_experiment

    run_dir = tmp_path_factory.mktemp("exponent-run")
    exp = build_experiment({"tasks": ["exponent"], "frameworks": NATIVE, "repeats": 2, "threads": 1,
                            "device": "cpu", "overrides": {"steps": EXPONENT_STEPS}})
    results, _ = run_experiment(exp, run_dir)
    return results, run_dir


@pytest.fixture(scope="session")
def digits_default_run(tmp_path_factory) -> tuple[dict, Path]:
    """Digits at its default size in every framework's idiomatic mode (torch eager, tensorflow fit and
    eager, jax jit): tests/test_digits.py checks the promised accuracy, and these trained models are
    the ones the serving tests export and serve (exported_models)."""
    from spotdiff.experiment import build_experiment
    from spotdiff.orchestrate import run_experiment

    exp = build_experiment({"tasks": ["digits"], "threads": 1, "device": "cpu", "frameworks": NATIVE,
                            "modes": ["eager", "fit", "jit"],
                            "overrides": {"parity_probe": False, "misclassified": 0}})
    return run_experiment(exp, tmp_path_factory.mktemp("digits-default"), render=False, index=False)


@pytest.fixture(scope="session")
def exported_models(digits_default_run, tmp_path_factory) -> tuple[dict, Path]:
    """Every export format of digits_default_run's models (the first ok cell of each framework):
    tests/test_serve.py checks this export, the other serving tests serve copies of parts of it
    (serve_support.serving_root), so each model is trained and compiled once per session."""
    from spotdiff.serve.export import ALL_FORMATS, run_export

    _, run_dir = digits_default_run
    root = tmp_path_factory.mktemp("models")
    return run_export(run_dir, root, list(ALL_FORMATS)), root


def require(module: str):
    """Import an optional dependency for a test module: skip without it on a developer's machine,
    fail under CI (CI=true), where a silently skipped module would hide a missing install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is required under CI=true but cannot be imported: {error}", pytrace=False)
        pytest.skip(f"{module} is not installed: {error}", allow_module_level=True)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real command line in a child process, as a user would."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "spotdiff", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout,
    )


# results.json as the runner writes it, built by hand: the report tests import no framework.
def cell(framework, mode, variant, steady=None, spread=None, status="ok", task="exponent", **metrics):
    """One results.json cell; ok cells get a short phi/loss trajectory unless `series` is given."""
    series = metrics.pop("series", None)
    if status == "ok" and series is None:
        phis = [3.0 - 2.0 * 0.99**step for step in range(1200)]  # longer than plots.MAX_POINTS
        series = {"phi": phis, "loss": [(3.0 - p) ** 2 / 10 for p in phis]}
    if steady is not None:
        metrics["steady_step_us"] = steady
        low, high = spread or (steady, steady)
        metrics["steady_step_us_min"], metrics["steady_step_us_max"] = low, high
    return {
        "id": f"{task}-{framework}-{mode}-{variant}-s0", "task": task, "framework": framework, "mode": mode,
        "variant": variant, "seed": 0, "status": status, "error": metrics.pop("error", None),
        "stderr_tail": metrics.pop("stderr_tail", None), "environment": {},
        "metrics": metrics if status == "ok" else {}, "series": series or {},
    }


def make_results() -> dict:
    """Two tasks, three frameworks, several modes and variants, a failed and a skipped cell, parity."""
    common = {"first_step_s": 0.5, "compile_s": 0.4, "final_phi": 2.999987,
              "phi_error": 1.3e-5, "steps_to_converge": 341, "final_loss": 1e-12}
    cells = [
        cell("torch", "eager", "manual", 120.0, (119.0, 121.0), peak_rss_mb=240.0, import_s=1.0, **common),
        cell("tensorflow", "graph", "manual", 220.0, (210.0, 230.0), peak_rss_mb=760.0, import_s=3.0,
             **common),
        cell("tensorflow", "xla", "manual", status="failed", error="XLA compile failed: <boom> & more",
             stderr_tail="Traceback (most recent call last):\n  <script>alert(1)</script>"),
        cell("jax", "eager", "manual", status="skipped", error="jax is not installed"),
        # jax-jit imports 12% faster than jax-fused: noise between modes, not a difference
        cell("jax", "jit", "manual", 16.0, (15.0, 17.0), peak_rss_mb=250.0, import_s=0.40, **common),
        cell("jax", "fused", "manual", 5.0, (4.9, 5.1), peak_rss_mb=255.0, import_s=0.45, **common),
        cell("torch", "eager", "optimizer", 180.0, (170.0, 190.0), peak_rss_mb=240.0, import_s=1.0, **common),
        cell("jax", "jit", "optimizer", 5.5, (5.2, 5.8), peak_rss_mb=300.0, import_s=0.4, **common),
        cell("jax", "fused", "optimizer", 5.0, (4.8, 6.0), peak_rss_mb=310.0, import_s=0.45, **common),
        # ok, but nothing recorded: null metrics and no series
        cell("torch", "compile", "optimizer", series={}, steady_step_us=None, first_step_s=None),
        # a task this version does not know still renders
        cell("mystery", "eager", "only", 50.0, task="mystery", first_step_s=0.1,
             series={"accuracy": [0.1, 0.5, 0.9]}),
    ]
    parity_manual = {"cells": 4, "max_trajectory_dev": 2.4e-7, "max_final_dev": 0.0,
                     "trajectory_pair": ["torch-eager", "jax-jit"],
                     "final_pair": ["torch-eager", "jax-fused"],
                     "trajectory_tol": 1e-3, "final_tol": 1e-4, "passed": True}
    parity_optimizer = {**parity_manual, "max_trajectory_dev": 0.02, "passed": False,
                        "trajectory_pair": ["jax-jit", "jax-fused"]}
    return {
        "schema": 1, "run_id": "test-run-42", "status": "complete",
        "environment": {"python": "3.11.7", "cpu_model": "Test CPU 9000", "cpu_cores": 8, "threads": 2,
                        "device": "cpu", "dtype": "float32", "started_at": "2026-01-02T03:04:05+0000",
                        "frameworks": {"torch": "2.13.0", "tensorflow": "2.21.0", "jax": "0.10.2"},
                        "flags": {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}},
        "experiment": {"tasks": ["exponent", "mystery"], "seed": 0, "repeats": 3, "overrides": {}},
        "cells": cells,
        "parity": {"exponent": {"manual": parity_manual, "optimizer": parity_optimizer}},
    }
