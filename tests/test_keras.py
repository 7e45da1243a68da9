"""Keras 3 as the fourth framework: every backend x jit_compile mode runs exponent and digits, agrees
with the native frameworks, and the report sets Keras-on-X beside X."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require

from spotdiff import frameworks
from spotdiff.experiment import build_experiment
from spotdiff.orchestrate import run_experiment
from spotdiff.tasks import get_spec
from spotdiff.tasks.digits import models

require("keras")
# One shared run of 19 cells; Keras' torch-jit cells compile Keras' train step with torch.compile,
# which alone takes minutes on a busy 2-core machine.
pytestmark = pytest.mark.timeout(1800)

KERAS_MODES = ("jax", "jax-jit", "tensorflow", "tensorflow-jit", "torch", "torch-jit")
# One or two native cells per backend ride along, for parity and the report's Keras-on-X rows.
NATIVE_MODES = ("eager", "jit")
# One digits step an epoch and one full test batch: Keras' torch-jit train step recompiles (Dynamo)
# at each of its first steps, and its test step at each new batch shape, several seconds apiece.
SMALL = {"steps": 30, "block_steps": 10, "warmup_steps": 10,
         "limit_train": 32, "limit_test": 32, "epochs": 1, "batch_size": 32}


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("keras-run")
    exp = build_experiment({
        "tasks": ["exponent", "digits"], "frameworks": ["keras", "torch", "tensorflow", "jax"],
        "modes": [*KERAS_MODES, *NATIVE_MODES], "variants": ["optimizer"], "repeats": 1, "threads": 1,
        "device": "cpu", "overrides": SMALL,
    })
    results, _ = run_experiment(exp, run_dir, index=False)
    return results, run_dir


def _keras_cells(results, task):
    return {c["mode"]: c for c in results["cells"] if c["task"] == task and c["framework"] == "keras"}


def test_modes_come_from_the_registry_where_the_impl_exists():
    for task in ("exponent", "digits"):
        spec = get_spec(task)
        assert spec.modes["keras"] == KERAS_MODES
        assert "jit_compile=True" in spec.mode_help[("keras", "jax-jit")]
    assert "keras" not in get_spec("sequences").modes  # no sequences/keras_impl.py: not a keras task
    keras = frameworks.FRAMEWORKS["keras"]
    assert keras.mode_env("torch-jit") == {"KERAS_BACKEND": "torch"}
    assert keras.mode("tensorflow").runs_on == "tensorflow" and keras.mode("jax-jit").counterparts == ("jit",)


@pytest.mark.parametrize("task", ["exponent", "digits"])
def test_every_backend_and_mode_is_ok_on_the_backend_it_names(keras_run, task):
    results, _ = keras_run
    cells = _keras_cells(results, task)
    assert set(cells) == set(KERAS_MODES)
    for mode, cell in cells.items():
        assert cell["status"] == "ok", (mode, cell["error"], cell["stderr_tail"])
        backend = mode.removesuffix("-jit")
        settings, versions = cell["environment"]["settings"], cell["environment"]["versions"]
        assert settings["keras_backend"] == backend and versions["keras_backend"] == backend
        assert settings["floatx"] == "float32" and settings["tf32"] is False
        assert settings["cpu_affinity"] == [settings["cpu_affinity"][0]]  # --threads 1, the backend's pinning


def test_exponent_keras_converges_like_the_natives(keras_run):
    results, _ = keras_run
    for mode, cell in _keras_cells(results, "exponent").items():
        assert len(cell["series"]["phi"]) == SMALL["steps"], mode
        assert cell["series"]["loss"][-1] < cell["series"]["loss"][0], mode
        assert cell["metrics"]["steady_step_us"] > 0 and cell["metrics"]["final_phi"] > 1.0, mode


def test_digits_keras_reports_what_the_other_digits_impls_report(keras_run):
    results, _ = keras_run
    for mode, cell in _keras_cells(results, "digits").items():
        metrics = cell["metrics"]
        assert metrics["param_count"] == models.PARAM_COUNTS["pytorch-examples"] and metrics["param_count_ok"]
        assert 0 <= metrics["test_accuracy"] <= 1 and metrics["steady_images_per_s"] > 0, mode
        assert len(cell["series"]["train_loss"]) == SMALL["limit_train"] // SMALL["batch_size"], mode
        artifacts = cell["artifacts"]
        assert Path(artifacts["parity_probe"]).exists() and Path(artifacts["weights"]).exists()


@pytest.mark.parametrize("task", ["exponent", "digits"])
def test_parity_with_the_native_frameworks_passes(keras_run, task):
    results, _ = keras_run
    ok = [c for c in results["cells"] if c["task"] == task and c["status"] == "ok"]
    frameworks_compared = {c["framework"] for c in ok}
    assert frameworks_compared == {"keras", "torch", "tensorflow", "jax"}
    entries = [e for e in results["parity"][task].values() if isinstance(e, dict) and "passed" in e]
    assert entries and all(e["passed"] is True for e in entries), [e.get("summary") for e in entries]


def test_report_sets_keras_on_each_backend_beside_that_backend(keras_run):
    from spotdiff.report.runs_on import section_rows

    results, run_dir = keras_run
    rows = section_rows(results)
    for task in ("exponent", "digits"):
        for mode in KERAS_MODES:
            backend = mode.removesuffix("-jit")
            mine = [r for r in rows if (r["task"], r["framework"], r["mode"]) == (task, "keras", mode)]
            assert mine and all(r["native_framework"] == backend for r in mine), (task, mode)
            assert all(r["speed_ratio"] > 0 and r["parity"] == "PASS" for r in mine), mine
    jit_rows = [r for r in rows if (r["task"], r["mode"]) == ("exponent", "jax-jit")]
    assert [r["native_mode"] for r in jit_rows] == ["jit"]  # the declared counterpart, not every jax cell
    html = (run_dir / "report.html").read_text()
    assert 'id="runs-on"' in html and "keras jax-jit" in html and "jax jit" in html
