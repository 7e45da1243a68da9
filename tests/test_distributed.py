"""Data-parallel training (`--workers N`): N workers with global batch B reach the parameters of one
worker with batch B, in every framework; a crashing or hanging worker fails its cell and leaves no
process behind; bad settings stop with exit 2. Tiny sizes: 64 images, B = 16, K = 4 steps.

Tolerance: the N-worker gradient is the all-reduced mean of N shard means, the one-worker gradient
one mean over B; float32 sums the same terms in a different order, about 1e-7 relative per sum. Over
K = 4 SGD steps (lr 0.05, momentum 0.9) with gradients of order 1 that stays near 1e-7 absolute on
the weights (3e-8 measured in every framework); PARAM_TOL = 1e-6 leaves room for other summation
orders and is still ~100x below one step's change of the weights (checked below, so the test
cannot pass by training nothing).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import machine_cores, run_cli

from spotdiff.children import free_ports
from spotdiff.distributed import sharding
from spotdiff.distributed.launch import run_group, split_cores
from spotdiff.distributed.plan import GroupPlan
from spotdiff.frameworks import installed_version
from spotdiff.tasks.digits.models import shared_weights

PARAM_TOL = 1e-6
LOSS_TOL = 1e-5  # per-step loss of the global batch, same argument
TINY = {"limit_train": 64, "limit_test": 16, "batch_size": 16, "epochs": 1, "parity_probe": False}
CLI_TINY = [f"--set={k}={v}" for k, v in {**TINY, "limit_train": 128, "epochs": 2}.items()]
FRAMEWORKS = ["torch", "tensorflow", "jax"]


def needs(framework: str):
    return pytest.mark.skipif(installed_version(framework) is None, reason=f"{framework} not installed")


CORES = sorted(os.sched_getaffinity(0))  # this test process's share of the machine


def two_cores(test):
    """`--workers 2` on two cores of their own: the test runs on the whole machine (its pytest
    worker's pin lifted), skipped where the machine has one core."""
    test = pytest.mark.usefixtures("whole_machine")(test)
    return pytest.mark.skipif(len(machine_cores()) < 2, reason="--workers 2 needs two cores")(test)


def group(framework: str, workers: int, out: Path) -> GroupPlan:
    cores = [[c] for c in (CORES * 2)[:workers]]  # correctness does not need cores of its own
    return GroupPlan(task="digits", framework=framework, params=TINY, seed=0, device="cpu", workers=workers,
                     cores=cores, ports=free_ports(workers), out_dir=str(out),
                     dropout=False)  # dropout masks cannot match between 1 and N workers


def leftovers(marker: str, wait_s: float = 5.0) -> list[str]:
    """Command lines of live processes that mention `marker` (a test's tmp path)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if marker in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(cmdline)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.mark.parametrize("framework", [pytest.param(f, marks=needs(f)) for f in FRAMEWORKS])
def test_two_workers_reach_the_parameters_of_one(framework, tmp_path):
    one, two = (run_group(group(framework, n, tmp_path / f"w{n}")) for n in (1, 2))
    w1, w2 = (dict(np.load(tmp_path / f"w{n}" / "weights.npz")) for n in (1, 2))
    start = shared_weights("pytorch-examples", 0)
    assert set(w1) == set(w2) == set(start)
    worst = max(float(np.max(np.abs(w1[k] - w2[k]))) for k in w1)
    moved = max(float(np.max(np.abs(w1[k] - start[k]))) for k in w1)
    assert worst <= PARAM_TOL, f"{framework}: 2 workers differ from 1 by {worst:.2e}"
    assert moved > 100 * PARAM_TOL, "training did not move the weights: the comparison would be vacuous"
    assert len(one.ranks[0]["losses"]) == 4 and len(two.ranks) == 2
    # Shards are B/N = 8 images each; their losses average to the global batch's loss.
    global_two = (two.ranks[0]["losses"] if two.ranks[0]["loss_scope"] == "global"
                  else np.mean([r["losses"] for r in two.ranks], axis=0))
    np.testing.assert_allclose(global_two, one.ranks[0]["losses"], atol=LOSS_TOL)
    assert all(r["peak_rss_mb"] > 0 and r["startup_s"] > 0 for r in two.ranks)
    assert [r["cores"] for r in two.ranks] == group(framework, 2, tmp_path).cores


def test_shards_cover_each_global_batch_once():
    order = np.random.default_rng(0).permutation(70)
    shards = [sharding.shard(order, 16, 2, rank) for rank in range(2)]  # (4, 8) each; 6 images dropped
    assert shards[0].shape == (4, 8)
    np.testing.assert_array_equal(np.concatenate(shards, axis=1), order[:64].reshape(4, 16))
    assert split_cores([0, 1, 2], 2) == [[0], [1]]
    ports = free_ports(3)
    assert len(set(ports)) == 3


@needs("torch")
@two_cores
def test_cli_workers_2_runs_and_reports(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "digits", "--frameworks", "torch", "--workers", "2", *CLI_TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    cell = json.loads((out / "results.json").read_text())["cells"][0]
    assert cell["status"] == "ok" and cell["id"].endswith("-w2") and cell["mode"] == "eager"
    m = cell["metrics"]
    assert (
        m["workers"] == 2 and m["engine"] == "DistributedDataParallel" and m["collective_backend"] == "gloo"
    )
    assert m["scaling_efficiency"] == pytest.approx(
        m["steady_images_per_s"] / (2 * m["reference_images_per_s"])
    )
    assert m["startup_s"] > m["group_init_s"] > 0 and 0 <= m["test_accuracy"] <= 1
    assert (
        len(cell["series"]["worker_peak_rss_mb"]) == 2 and len(cell["series"]["train_loss"]) == 2 * 128 // 16
    )
    affinity = cell["environment"]["settings"]["cpu_affinity_per_worker"]
    assert len(affinity) == 2 and not set(affinity[0]) & set(affinity[1])  # a core each, none shared
    html = (out / "report.html").read_text()
    assert 'id="distributed"' in html and "scaling efficiency" in html
    assert not leftovers(str(tmp_path))


# A task of the tests' own (--task-module): digits, whose PyTorch engine fails on rank 1 of 2.
FAULTY_SPEC = """from dataclasses import replace
from spotdiff.tasks.digits import spec as digits

SPEC = replace(digits.SPEC, name="faultydigits", data_parallel_modes={"torch": ("eager",)})
"""
FAULTY_ENGINE = """import time
from spotdiff.tasks.digits import torch_dp_impl

ENGINE = torch_dp_impl.ENGINE


def train(ctx, params, data):
    if ctx.rank == 1 and ctx.world == 2:
        if {kind!r} == "hang":
            time.sleep(3600)
        raise RuntimeError("injected fault in rank 1")
    return torch_dp_impl.train(ctx, params, data)
"""


def faulty_task(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / "faultydigits"
    folder.mkdir()
    (folder / "spec.py").write_text(FAULTY_SPEC)
    (folder / "torch_impl.py").write_text("from spotdiff.tasks.digits.torch_impl import *  # noqa: F403\n")
    (folder / "torch_dp_impl.py").write_text(FAULTY_ENGINE.format(kind=kind))
    return folder


@needs("torch")
@two_cores
def test_crashing_worker_fails_the_cell_and_leaves_no_process(tmp_path):
    out = tmp_path / "run"
    proc = run_cli(
        "run",
        "faultydigits",
        "--task-module",
        str(faulty_task(tmp_path, "exit")),
        "--frameworks",
        "torch",
        "--workers",
        "2",
        *CLI_TINY,
        "--out",
        str(out),
    )
    cell = json.loads((out / "results.json").read_text())["cells"][0]
    assert cell["status"] == "failed", proc.stdout[-2000:]
    assert "rank 1 failed: RuntimeError: injected fault in rank 1" in cell["error"]
    assert "injected fault" in cell["stderr_tail"]
    assert not leftovers(str(tmp_path))


@needs("torch")
@two_cores
def test_timeout_reaps_every_worker(tmp_path):
    # Rank 1 hangs, so rank 0 waits in init_process_group: only the cell timeout ends them.
    out = tmp_path / "run"
    start = time.monotonic()
    run_cli(
        "run",
        "faultydigits",
        "--task-module",
        str(faulty_task(tmp_path, "hang")),
        "--frameworks",
        "torch",
        "--workers",
        "2",
        *CLI_TINY,
        "--cell-timeout",
        "8",
        "--out",
        str(out),
    )
    cell = json.loads((out / "results.json").read_text())["cells"][0]
    assert cell["status"] == "failed" and "timed out after 8 s" in cell["error"]
    assert time.monotonic() - start < 60
    assert not leftovers(str(tmp_path))


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["exponent", "--workers", "2"],
            "task exponent has no data-parallel training; tasks that do: digits",
        ),
        (["digits", "--workers", "3"], "--workers 3 needs 3 cores"),
        (["digits", "--workers", "0"], "workers: Input should be greater than or equal to 1"),
        (
            ["digits", "--workers", "2", "--set", "batch_size=15"],
            "batch_size 15 does not split into 2 equal shards",
        ),
        (["digits", "--workers", "2", "--modes", "compile"], "--workers 2 runs the data-parallel modes only"),
    ],
)
@pytest.mark.usefixtures("whole_machine")  # --threads 2: both cores, as a user has them
def test_bad_workers_setting_is_one_line_and_exit_2(args, message, tmp_path):
    proc = run_cli("run", *args, "--threads", "2", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spotdiff: error: ")
    assert message in proc.stderr


def test_every_data_parallel_engine_exists_with_train_and_engine_name():
    import ast
    import importlib.util

    from spotdiff.distributed import data_parallel_modes
    from spotdiff.frameworks import FRAMEWORKS
    from spotdiff.tasks import get_spec, impl_module

    modes = data_parallel_modes("digits")
    assert set(modes) == {name for name, framework in FRAMEWORKS.items() if not framework.modes}
    for framework, names in modes.items():
        assert set(names) <= set(get_spec("digits").modes[framework])
        path = importlib.util.find_spec(
            impl_module("digits", FRAMEWORKS[framework].impl_prefix + "_dp")
        ).origin
        tree = ast.parse(Path(path).read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        defined |= {
            t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
        }
        assert {"train", "ENGINE"} <= defined, framework


def test_toml_workers_key_is_validated_like_the_flag(tmp_path):
    config = tmp_path / "exp.toml"
    config.write_text('tasks = ["exponent"]\nworkers = 2\n')
    proc = run_cli("run", "--config", str(config), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and "task exponent has no data-parallel training" in proc.stderr


def test_report_section_lists_ok_and_failed_data_parallel_cells():
    from spotdiff.report.distributed import distributed_context

    ok = {
        "id": "digits-torch-eager-sgd-s0-w2",
        "framework": "torch",
        "mode": "eager",
        "status": "ok",
        "metrics": {
            "workers": 2,
            "engine": "DistributedDataParallel",
            "steady_images_per_s": 8000.0,
            "reference_images_per_s": 4000.0,
            "scaling_efficiency": 1.0,
            "test_accuracy": 0.93,
        },
        "series": {"worker_peak_rss_mb": [460.0, 450.0]},
    }
    failed = {
        "id": "digits-jax-jit-sgd-s0-w2",
        "framework": "jax",
        "mode": "jit",
        "status": "failed",
        "error": "GroupFailed: rank 1 failed",
        "metrics": {},
        "series": {},
    }
    plain = {"id": "digits-torch-eager-sgd-s0", "framework": "torch", "status": "ok", "metrics": {}}
    assert distributed_context({"cells": [plain]}) is None
    rows = distributed_context({"cells": [ok, failed, plain]})["rows"]
    assert [r["framework"] for r in rows] == ["torch", "jax"]
    assert (
        rows[0]["efficiency"] == "1"
        and rows[0]["rss"] == "460 / 450"
        and rows[1]["error"].endswith("rank 1 failed")
    )
