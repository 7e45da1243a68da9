"""A missing framework, a crashed or hung worker, Ctrl-C: the run goes on and keeps its results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from spotdiff import frameworks
from spotdiff.errors import UserError
from spotdiff.executors.local import run_cell
from spotdiff.experiment import build_experiment, expand
from spotdiff.orchestrate import run_experiment

SMALL = {"steps": 40, "block_steps": 10, "warmup_steps": 10}


def _small(**settings):
    return build_experiment({"tasks": ["exponent"], "repeats": 1, "threads": 1, "device": "cpu",
                             "overrides": SMALL, **settings})


def test_missing_framework_is_skipped_and_the_run_goes_on(tmp_path, monkeypatch):
    real = frameworks.installed_version
    monkeypatch.setattr(frameworks, "installed_version", lambda name: None if name == "jax" else real(name))
    exp = _small(frameworks=["torch", "jax"], modes=["eager"], variants=["manual"])
    results, _ = run_experiment(exp, tmp_path, render=False)
    by_framework = {c["framework"]: c for c in results["cells"]}
    assert by_framework["torch"]["status"] == "ok"
    assert by_framework["jax"]["status"] == "skipped"
    assert "JAX is not installed" in by_framework["jax"]["error"]


def _worker_children():
    return [
        p for p in psutil.Process().children(recursive=True)
        if "spotdiff.worker" in " ".join(p.cmdline())
    ]


def _kill_first_worker(sig):
    deadline = time.time() + 60
    while time.time() < deadline:
        workers = _worker_children()
        if workers:
            time.sleep(0.5)
            os.kill(workers[0].pid, sig)
            return
        time.sleep(0.05)


def test_worker_killed_by_a_signal_is_a_failed_cell_and_others_complete(tmp_path):
    exp = _small(frameworks=["jax"], modes=["eager", "jit"], variants=["manual"])
    killer = threading.Thread(target=_kill_first_worker, args=(signal.SIGKILL,))
    killer.start()
    results, _ = run_experiment(exp, tmp_path, render=False)
    killer.join()
    first, second = results["cells"]
    assert first["status"] == "failed" and "killed by SIGKILL" in first["error"]
    assert second["status"] == "ok"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [c["status"] for c in saved["cells"]] == ["failed", "ok"]


def test_segfault_is_reported_with_its_signal(tmp_path):
    (cell,) = expand(_small(frameworks=["torch"], modes=["eager"], variants=["manual"]))
    killer = threading.Thread(target=_kill_first_worker, args=(signal.SIGSEGV,))
    killer.start()
    outcome = run_cell(cell, tmp_path / "cell", timeout_s=120)
    killer.join()
    assert outcome.status == "failed" and "SIGSEGV" in outcome.error


def test_cell_timeout_fails_only_that_cell(tmp_path):
    (cell,) = expand(_small(frameworks=["tensorflow"], modes=["eager"], variants=["manual"]))
    outcome = run_cell(cell, tmp_path / "cell", timeout_s=0.5)  # TensorFlow cannot even import by then
    assert outcome.status == "failed"
    assert "timed out after 0.5 s" in outcome.error
    assert not _worker_children()


def test_an_exception_in_the_worker_is_reported_with_stderr_tail(tmp_path):
    (cell,) = expand(_small(frameworks=["jax"], modes=["jit"], variants=["manual"]))
    cell.params["n_samples"] = -5  # bypasses validation: the child's own check must catch it
    outcome = run_cell(cell, tmp_path / "cell", timeout_s=120)
    assert outcome.status == "failed"  # the same one line the parent gives for a bad --set
    assert outcome.error.startswith("UserError: bad --set value for task exponent: n_samples")


def test_ctrl_c_keeps_finished_cells_and_writes_the_report(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        # Two quick JAX cells, then two TensorFlow cells that each spend seconds importing: the
        # interrupt lands while the run is still going, however fast the machine.
        [sys.executable, "-m", "spotdiff", "run", "exponent", "--frameworks", "jax,tensorflow",
         "--modes", "jit,eager,graph", "--variant", "manual", "--threads", "1", "--repeats", "1",
         "--set", "steps=40", "--set", "warmup_steps=10", "--out", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell that starts us in the background ignores SIGINT, and children inherit that;
        # give the CLI the default Ctrl-C handling a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    results_path = run_dir / "results.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        # The run claims results.json empty at once and writes its first document a moment later.
        text = results_path.read_text() if results_path.exists() else ""
        if text and json.loads(text)["cells"]:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    saved = json.loads(results_path.read_text())
    assert saved["status"] == "interrupted"
    assert saved["cells"] and saved["cells"][0]["status"] == "ok"
    assert len(saved["cells"]) < 5
    assert (run_dir / "report.html").exists()


def test_device_gpu_runs_on_the_cpu_here_and_says_so(tmp_path):
    exp = _small(modes=["eager"], variants=["manual"], device="gpu")
    results, _ = run_experiment(exp, tmp_path, render=False)
    for cell in results["cells"]:
        assert cell["status"] == "ok", cell["error"]
        settings = cell["environment"]["settings"]
        if "cpu" in settings["device"].lower():
            assert "sees no GPU" in settings["device_note"]


def test_a_task_error_names_its_type_once(tmp_path):
    """The worker reports the message, the runner prefixes the type: `ValueError: ...`, not twice."""
    (cell,) = expand(_small(frameworks=["jax"], modes=["jit"], variants=["manual"]))
    cell = cell.model_copy(update={"params": {**cell.params, "steps": "many"}})  # fails in the child
    outcome = run_cell(cell, tmp_path / "cell", timeout_s=120)
    assert outcome.status == "failed"
    with pytest.raises(UserError) as in_the_parent:  # the same override, validated before any child
        _small(overrides={**SMALL, "steps": "many"})
    assert outcome.error == f"UserError: {in_the_parent.value}"  # one function, one line, everywhere
    assert outcome.error.startswith("UserError: bad --set value for task exponent: steps: ")
