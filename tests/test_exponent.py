"""The exponent task in every framework x mode x variant, run for real in child processes."""

from __future__ import annotations

import json

import pytest
from conftest import EXPONENT_STEPS as STEPS
from conftest import NATIVE

from spotdiff.experiment import build_experiment, expand
from spotdiff.tasks.exponent.spec import PARITY_FINAL_TOL, PARITY_TRAJECTORY_TOL

MATRIX = [(c.framework, c.mode, c.variant)
          for c in expand(build_experiment({"tasks": ["exponent"], "frameworks": NATIVE}))]
METRICS = (
    "import_s", "first_step_s", "steady_step_us", "steady_step_us_min", "steady_step_us_max",
    "steps_per_s", "peak_rss_mb", "final_loss", "final_phi", "phi_error", "steps_to_converge",
)


@pytest.fixture(scope="module")
def matrix_run(exponent_matrix_run):
    """One real run of the whole default matrix at a small step count (conftest: shared with
    tests/test_tensorboard.py)."""
    return exponent_matrix_run


def _cell(results, framework, mode, variant):
    (cell,) = [
        c for c in results["cells"]
        if (c["framework"], c["mode"], c["variant"]) == (framework, mode, variant)
    ]
    return cell


@pytest.mark.parametrize("framework,mode,variant", MATRIX, ids=["-".join(m) for m in MATRIX])
def test_cell_trains_and_reports_every_metric(matrix_run, framework, mode, variant):
    results, _ = matrix_run
    cell = _cell(results, framework, mode, variant)
    assert cell["status"] == "ok", (cell["error"], cell["stderr_tail"])
    for name in METRICS:
        assert name in cell["metrics"], name
    m = cell["metrics"]
    assert len(cell["series"]["phi"]) == STEPS and len(cell["series"]["loss"]) == STEPS
    assert m["phi_error"] < 0.05  # converging towards the true phi = 3
    assert cell["series"]["loss"][-1] < cell["series"]["loss"][0] / 100
    assert m["steady_step_us_min"] <= m["steady_step_us"] <= m["steady_step_us_max"]
    assert m["first_step_s"] > 0 and m["peak_rss_mb"] > 50
    settings = cell["environment"]["settings"]
    assert settings["cpu_affinity"] == [settings["cpu_affinity"][0]]  # --threads 1 pinned
    assert settings["tf32"] is False and settings["dtype"] == "float32"


@pytest.mark.parametrize("variant", ["manual", "optimizer"])
def test_parity_across_all_frameworks_and_modes(matrix_run, variant):
    results, _ = matrix_run
    parity = results["parity"]["exponent"][variant]
    assert parity["cells"] == 9
    assert parity["max_trajectory_dev"] <= PARITY_TRAJECTORY_TOL
    assert parity["max_final_dev"] <= PARITY_FINAL_TOL
    assert parity["passed"]


def test_run_directory_contents(matrix_run):
    results, run_dir = matrix_run
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["status"] == "complete" and len(on_disk["cells"]) == len(MATRIX)
    env = on_disk["environment"]
    for key in ("python", "cpu_model", "cpu_cores", "threads", "device", "frameworks", "flags"):
        assert key in env
    assert (run_dir / "report.html").exists()
    assert list((run_dir / "plots").glob("*.png"))


def test_run_is_in_history(matrix_run):
    from spotdiff.record import store

    results, _ = matrix_run
    runs = store.list_runs()
    assert runs[0]["run_id"] == results["run_id"] and runs[0]["cells_ok"] == len(MATRIX)


def test_a_jax_cell_compiles_cold_even_when_the_user_turns_jax_s_cache_on(tmp_path, monkeypatch):
    from spotdiff.orchestrate import run_experiment

    cache = tmp_path / "jax-cache"  # what a user's JAX_COMPILATION_CACHE_DIR would be filled with
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(cache))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    exp = build_experiment({"tasks": ["exponent"], "frameworks": ["jax"], "modes": ["jit"],
                            "variants": ["manual"], "repeats": 1, "threads": 1, "overrides": {"steps": 20}})
    results, _ = run_experiment(exp, tmp_path / "run", render=False, index=False)
    (cell,) = results["cells"]
    assert cell["status"] == "ok", cell["error"]
    assert not cache.exists() or not any(cache.iterdir())  # nothing written, so nothing a later cell loads
