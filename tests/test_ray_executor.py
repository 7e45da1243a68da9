"""The Ray executor: the same results as the local one, a lost Ray worker is one failed cell,
Ctrl-C keeps finished cells, bad input is one line and exit 2. One local Ray (2 CPUs) per module."""

from __future__ import annotations

import _thread
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
from conftest import require, run_cli

from spotdiff.executors import ray_task
from spotdiff.experiment import build_experiment
from spotdiff.orchestrate import run_experiment
from spotdiff.record import store

ray = require("ray")

TINY = {"steps": 20, "block_steps": 10, "warmup_steps": 5}


@pytest.fixture(scope="module")
def local_ray():
    """Two Ray nodes of one CPU each on this machine, started before the executor runs: it uses
    this session and leaves it open. Two nodes, so cells run side by side as on a cluster."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()
    cluster.shutdown()


def _tiny(executor, **settings):
    return build_experiment({"tasks": ["exponent"], "frameworks": ["torch", "jax"], "modes": ["eager"],
                             "variants": ["manual"], "repeats": 1, "threads": 1, "device": "cpu",
                             "overrides": TINY, "executor": executor, **settings})


def _workers_of(run_dir):
    """This run's cell workers (`python -m spotdiff.worker <run_dir>/cells/...`) on this machine."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "spotdiff.worker" in cmdline and any(str(run_dir) in arg for arg in cmdline):
            found.append(process)
    return found


def _when_a_worker_runs(run_dir, act):
    """In a thread: wait for this run's first cell worker, then `act(worker_process)`."""
    def watch():
        deadline = time.time() + 60
        while time.time() < deadline:
            workers = _workers_of(run_dir)
            if workers:
                act(workers[0])
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def _no_worker_left(run_dir, within_s=10.0):
    deadline = time.time() + within_s
    while _workers_of(run_dir) and time.time() < deadline:
        time.sleep(0.2)
    return not _workers_of(run_dir)


@pytest.fixture(scope="module")
def local_and_ray(local_ray, tmp_path_factory):
    """The same tiny cells run by the local executor and on Ray: (local, on_ray, ray run_dir)."""
    root = tmp_path_factory.mktemp("executors")
    local, _ = run_experiment(_tiny("local"), root / "local", render=False)
    on_ray, run_dir = run_experiment(_tiny("ray"), root / "ray", render=False)
    return local, on_ray, run_dir


def test_ray_results_equal_the_local_executors(local_and_ray):
    local, on_ray, run_dir = local_and_ray

    def shape(results):
        return [(c["id"], c["status"], sorted(c["metrics"]), sorted(c["series"])) for c in results["cells"]]

    assert [c["status"] for c in local["cells"]] == ["ok", "ok"]
    assert shape(on_ray) == shape(local)
    verdicts = {
        task: {v: p["passed"] for v, p in variants.items()} for task, variants in local["parity"].items()
    }
    assert {t: {v: p["passed"] for v, p in vs.items()} for t, vs in on_ray["parity"].items()} == verdicts
    assert json.loads((run_dir / "results.json").read_text())["cells"] == on_ray["cells"]
    assert on_ray["environment"]["executor"]["name"] == "ray"
    assert {c["environment"]["node"]["hostname"] for c in on_ray["cells"]}  # where each cell ran
    assert [c["status"] for c in store.cell_metrics(on_ray["run_id"])] == ["ok", "ok"]
    assert (run_dir / "cells" / on_ray["cells"][0]["id"] / "events.jsonl").exists()


def test_ray_cells_train_exactly_as_local_ones(local_and_ray):
    """Same cell, same seed, same numbers: a cell Ray passes on wrongly (params, seed, variant)
    trains differently and shows here."""
    local, on_ray, _ = local_and_ray
    assert [c["id"] for c in on_ray["cells"]] == [c["id"] for c in local["cells"]]
    for here, there in zip(local["cells"], on_ray["cells"]):
        assert there["status"] == "ok", there["error"]
        assert len(here["series"]["phi"]) == len(here["series"]["loss"]) == TINY["steps"]
        for name in ("phi", "loss"):
            assert there["series"][name] == pytest.approx(here["series"][name], rel=0, abs=1e-12), name
        for name in ("final_phi", "final_loss", "phi_error"):
            assert there["metrics"][name] == pytest.approx(here["metrics"][name], rel=0, abs=1e-12), name
        assert 1.0 < here["metrics"]["final_phi"] < 3.0  # 20 steps from phi = 1 towards the true 3


def test_logs_of_an_earlier_run_are_replaced_on_the_driver(local_ray, tmp_path):
    """A node without the driver's filesystem sends its logs back: they replace the older ones."""
    from spotdiff.executors.local import CellOutcome
    from spotdiff.executors.ray_executor import RayExecutor
    from spotdiff.experiment import expand

    (cell,) = expand(_tiny("ray", frameworks=["jax"]))
    cell_dir = tmp_path / "cells" / cell.id
    cell_dir.mkdir(parents=True)
    (cell_dir / "stderr.log").write_text("the earlier run's stderr")
    answer = {"outcome": CellOutcome(cell, "ok"), "files": {"stderr.log": b"this run's stderr"}}
    RayExecutor(None)._collect(ray.put(answer), cell, "node", tmp_path)
    assert (cell_dir / "stderr.log").read_text() == "this run's stderr"


def test_a_node_sends_no_logs_of_an_earlier_run(local_ray, monkeypatch):
    """A node that cannot create the driver's folder keeps cells in a fallback folder named after
    the run folder; a cell that writes no log this time (a skipped one) sends none back."""
    from spotdiff.executors.local import CellOutcome
    from spotdiff.experiment import expand

    run_dir = "/proc/spotdiff-no-such-run"  # cannot be created: the node falls back
    (cell,) = expand(_tiny("ray", frameworks=["jax"]))
    stale = ray_task.fallback_cells_root(run_dir) / cell.id
    stale.mkdir(parents=True, exist_ok=True)
    for name in ray_task.LOG_FILES:
        (stale / name).write_text("from the earlier run")
    skipped = lambda cell, cell_dir, timeout_s: CellOutcome(cell, "skipped")  # noqa: E731 - writes no log
    monkeypatch.setattr(ray_task.local, "run_cell", skipped)
    answer = ray_task.run_cell_on_node(cell.model_dump_json(), run_dir, 60.0)
    assert answer["files"] == {}
    assert answer["outcome"].environment["node"]["cell_dir"] == str(stale)


def test_a_ray_worker_killed_mid_cell_is_a_failed_cell_and_the_run_goes_on(local_ray, tmp_path):
    run_dir = tmp_path / "run"
    killed = []

    def kill_its_ray_worker(
        worker,
    ):  # the cell worker's parent runs the Ray task: kill it, as a lost node would
        killed.append(next(arg for arg in worker.cmdline() if arg.endswith("cell.json")).split("/")[-2])
        os.kill(worker.ppid(), signal.SIGKILL)

    killer = _when_a_worker_runs(run_dir, kill_its_ray_worker)
    results, _ = run_experiment(
        _tiny("ray", frameworks=["jax"], modes=["eager", "jit"]), run_dir, render=False
    )
    killer.join()
    by_id = {c["id"]: c for c in results["cells"]}
    lost = by_id.pop(killed[0])
    (other,) = by_id.values()
    assert lost["status"] == "failed" and "lost on Ray node" in lost["error"], lost["error"]
    assert other["status"] == "ok", other["error"]  # the cell beside it, on the other node, went on
    saved = json.loads((run_dir / "results.json").read_text())["cells"]
    assert sorted(c["status"] for c in saved) == ["failed", "ok"]
    assert _no_worker_left(run_dir)  # the orphaned worker of the lost cell was reaped


def test_ctrl_c_cancels_running_cells_and_keeps_finished_ones(local_ray, tmp_path):
    run_dir = tmp_path / "run"
    exp = _tiny("ray", frameworks=["jax", "tensorflow"], modes=["jit", "graph"])  # side by side
    results_path = run_dir / "results.json"

    def interrupt_once_jax_is_done(worker):  # TensorFlow takes seconds to import: it is still running
        while not (results_path.exists() and json.loads(results_path.read_text())["cells"]):
            time.sleep(0.05)
        _thread.interrupt_main()

    watcher = _when_a_worker_runs(run_dir / "cells" / "exponent-tensorflow", interrupt_once_jax_is_done)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp, run_dir, render=False)
    watcher.join()
    saved = json.loads(results_path.read_text())
    assert saved["status"] == "interrupted"
    assert [(c["framework"], c["status"]) for c in saved["cells"]] == [("jax", "ok")]
    assert _no_worker_left(run_dir)  # the cancelled task's runner killed its worker


def test_cells_that_fit_no_node_fail_with_the_reason(local_ray, tmp_path):
    results, _ = run_experiment(_tiny("ray", threads=2), tmp_path, render=False)  # nodes have 1 CPU
    for cell in results["cells"]:
        assert cell["status"] == "failed"
        assert cell["error"].startswith("no Ray node has 2 CPUs for --threads 2 (largest: 1)")


LAUNCHER = (
    "import subprocess, sys; print(subprocess.Popen(sys.argv[1:], start_new_session=True, "
    "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"
)


def test_reap_orphans_kills_only_this_runs_workers(tmp_path):
    def orphan_worker(run_dir):  # a parentless process whose command line looks like a cell worker's
        command = [
            sys.executable,
            "-c",
            "import time; time.sleep(60)",
            "spotdiff.worker",
            str(run_dir / "cells" / "c" / "cell.json"),
        ]
        launched = subprocess.run(
            [sys.executable, "-c", LAUNCHER, *command], check=True, capture_output=True, text=True
        )
        return psutil.Process(int(launched.stdout))

    ours, theirs = orphan_worker(tmp_path / "ours"), orphan_worker(tmp_path / "theirs")
    try:
        assert ray_task.reap_orphans(str(tmp_path / "ours")) == [ours.pid]
        ours.wait(timeout=10)
        assert theirs.is_running()
    finally:
        theirs.kill()


def test_cli_runs_on_ray_from_a_toml_key(tmp_path):
    config = tmp_path / "exp.toml"
    config.write_text('executor = "ray"\nrepeats = 1\nthreads = 1\n[set]\nsteps = 20\nwarmup_steps = 5\n')
    out = tmp_path / "run"
    result = run_cli(
        "run",
        "exponent",
        "-f",
        "jax",
        "-m",
        "jit",
        "--variant",
        "manual",
        "--config",
        str(config),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    saved = json.loads((out / "results.json").read_text())
    assert saved["environment"]["executor"]["name"] == "ray"
    assert [c["status"] for c in saved["cells"]] == ["ok"]


NO_RAY = "import sys; sys.modules['ray'] = None; from spotdiff.cli import main; main(sys.argv[1:])"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--executor", "ray", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
        (["--executor", "ray", "--address", "no-port"], "bad --address 'no-port'"),
        (["--executor", "dask"], "unknown executor 'dask'; choose from: local, ray"),
        (["--address", "127.0.0.1:6379"], "--address is the Ray cluster to run on: it needs --executor ray"),
    ],
)
def test_bad_executor_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = run_cli("run", "exponent", "-f", "jax", "--out", str(tmp_path / "run"), *args, timeout=60)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"spotdiff: error: {message}")
    assert not (tmp_path / "run").exists()


def test_ray_not_installed_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", NO_RAY, "run", "exponent", "-f", "jax", "--executor", "ray"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "spotdiff: error: --executor ray needs Ray: pip install 'spotdiff[cluster]'"
    )


def test_local_runs_never_import_ray():
    code = (
        "import sys\nfrom spotdiff import cli, orchestrate, executors\n"
        "from spotdiff.experiment import build_experiment\n"
        "executors.start(build_experiment({'tasks': ['exponent']})).close()\n"
        "assert 'ray' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
