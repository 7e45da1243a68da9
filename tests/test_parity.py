"""spotdiff.parity and every task's parity(): NaN/inf, different lengths, too few cells, atol vs
rtol, perturbed probes. Hand-made cells (no framework is imported), plus one tiny CLI run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from spotdiff.parity import Check, compare
from spotdiff.report.html import parity_rows
from spotdiff.report.terminal import parity_lines
from spotdiff.tasks.digits import spec as digits
from spotdiff.tasks.exponent import spec as exponent
from spotdiff.tasks.sequences import spec as sequences
from spotdiff.tasks.trees import spec as trees


def exponent_cell(framework, mode, phi, status="ok", variant="manual", error=None):
    phi = list(phi)
    return {"task": "exponent", "framework": framework, "mode": mode, "variant": variant, "seed": 0,
            "status": status, "error": error, "metrics": {"final_phi": phi[-1]} if status == "ok" else {},
            "series": {"phi": phi, "loss": [1e-3] * len(phi)} if status == "ok" else {}}


def exponent_parity(*cells):
    return exponent.parity(list(cells), exponent.ExponentParams())["manual"]


def test_nan_in_one_cell_fails_and_names_the_cell():
    p = exponent_parity(exponent_cell("torch", "eager", [1.0, 2.0, 3.0]),
                        exponent_cell("jax", "jit", [1.0, float("nan"), float("nan")]))
    assert p["passed"] is False and p["verdict"] == "FAIL"
    assert "NaN in phi of jax-jit" in p["summary"]


def test_nan_written_as_null_in_results_json_still_fails():
    p = exponent_parity(exponent_cell("torch", "eager", [1.0, 2.0]), exponent_cell("jax", "jit", [1.0, None]))
    assert p["passed"] is False and "jax-jit" in p["summary"]


def test_inf_fails():
    p = exponent_parity(exponent_cell("torch", "eager", [1.0, float("inf")]),
                        exponent_cell("tensorflow", "graph", [1.0, float("inf")]))
    assert p["passed"] is False and "inf in phi of torch-eager" in p["summary"]


def test_series_of_different_lengths_fail_instead_of_being_cut():
    p = exponent_parity(exponent_cell("torch", "eager", [1.0, 2.0, 3.0]),
                        exponent_cell("jax", "jit", [1.0, 2.0]))
    assert p["passed"] is False
    assert any(f["kind"] == "shape" and f["cells"] == ["torch-eager", "jax-jit"] for f in p["failures"])


def test_one_ok_cell_is_not_compared_and_the_failed_one_is_listed():
    p = exponent_parity(exponent_cell("torch", "eager", [1.0, 2.0]),
                        exponent_cell("jax", "jit", [], status="failed", error="killed by signal 9"))
    assert p["passed"] is None and p["verdict"] == "not compared"
    assert p["not_compared"] == [{"cell": "jax-jit", "status": "failed", "reason": "killed by signal 9"}]
    assert p["failed_cells"] == 1 and "jax-jit (failed)" in p["summary"]
    (line,) = parity_lines({"parity": {"exponent": {"manual": p}}})
    assert "not compared" in line and "1 failed cell" in line and "PASS" not in line
    (row,) = parity_rows({"parity": {"exponent": {"manual": p}}})
    assert row["verdict"] == "not compared" and row["not_compared"][0]["cell"] == "jax-jit"


def test_agreeing_cells_pass_and_the_verdict_works_for_any_number_of_frameworks():
    cells = [exponent_cell(fw, "eager", [1.0, 2.0, 2.9999]) for fw in ("torch", "tensorflow", "jax", "keras")]
    p = exponent_parity(*cells)
    assert p["passed"] is True and p["cells"] == 4 and p["max_trajectory_dev"] == 0.0


def test_a_trajectory_outside_atol_fails_naming_the_pair():
    p = exponent_parity(exponent_cell("torch", "eager", [1.0, 2.0]),
                        exponent_cell("jax", "jit", [1.0, 2.002]))
    assert p["passed"] is False
    assert "phi: torch-eager vs jax-jit differ by 2.00e-03" in p["summary"]


def _pair(a, b):
    return [{"framework": "torch", "mode": "eager", "status": "ok", "x": a},
            {"framework": "jax", "mode": "jit", "status": "ok", "x": b}]


def _passed(check, a, b):
    return compare(_pair(np.asarray(a), np.asarray(b)), [check], lambda c: {"x": c["x"]})["passed"]


def test_rtol_scales_with_each_value_and_atol_does_not():
    relative, absolute = Check("x", "x", atol=0.0, rtol=1e-3), Check("x", "x", atol=1e-3)
    assert _passed(relative, [1000.0], [1000.5]) is True  # 5e-4 relative
    assert _passed(absolute, [1000.0], [1000.5]) is False  # 0.5 absolute
    assert _passed(relative, [1e-3], [2e-3]) is False  # 100 % relative
    assert _passed(absolute, [1e-3], [2e-3]) is True  # 1e-3 absolute


def test_gradient_tolerance_scales_with_the_gradient_size():
    per_element = Check("x", "x", atol=0.0, rtol=1e-4)
    by_magnitude = Check("x", "x", atol=0.0, rtol=1e-4, relative_to="magnitude")
    big, tiny_entry_differs = [1.0, 1e-9], [1.0, 5e-9]
    assert _passed(by_magnitude, big, tiny_entry_differs) is True  # 4e-9 << 1e-4 * max |g|
    assert _passed(per_element, big, tiny_entry_differs) is False
    assert _passed(by_magnitude, [1e-6, 0.0], [2e-6, 0.0]) is False  # small gradients: a small tolerance


def _probe(path, grads, params, loss=0.69):
    np.savez(path, loss=np.asarray([loss]), **{f"grad:{k}": v for k, v in grads.items()},
             **{f"param:{k}": v for k, v in params.items()})
    return str(path)


def _probe_cells(tmp_path, task, perturb=None):
    rng = np.random.default_rng(0)
    grads = {"embedding": rng.normal(size=(5, 3)), "lstm_kernel": rng.normal(size=(3, 8)) * 1e-2}
    params = {name: rng.normal(size=g.shape) for name, g in grads.items()}
    cells = []
    for framework, mode in (("torch", "packed"), ("tensorflow", "packed"), ("jax", "packed")):
        mine = {k: v.copy() for k, v in grads.items()}
        if perturb and framework == perturb[0]:
            mine[perturb[1]][0, 0] *= 1.01
        path = _probe(tmp_path / f"{framework}.npz", mine, params)
        cells.append({"task": task, "framework": framework, "mode": mode, "status": "ok", "seed": 0,
                      "metrics": {"first_batch_loss": 0.69}, "artifacts": {"parity_probe": path}})
    return cells


@pytest.mark.parametrize("task", [sequences, trees], ids=["sequences", "trees"])
def test_step_probe_with_one_perturbed_gradient_fails_naming_the_parameter(tmp_path, task):
    params = task.SPEC.params()
    assert task.parity(_probe_cells(tmp_path, task.SPEC.name), params)["probe"]["passed"] is True
    p = task.parity(_probe_cells(tmp_path, task.SPEC.name, perturb=("jax", "lstm_kernel")), params)["probe"]
    assert p["passed"] is False
    assert {f["check"] for f in p["failures"]} == {"grad:lstm_kernel"}
    assert "grad:lstm_kernel: torch-packed vs jax-packed" in p["summary"]


def test_step_probe_with_nan_fails_and_a_missing_probe_is_not_compared(tmp_path):
    cells = _probe_cells(tmp_path, "trees")
    _probe(tmp_path / "jax.npz", {"embedding": np.full((5, 3), np.nan), "lstm_kernel": np.zeros((3, 8))},
           {"embedding": np.zeros((5, 3)), "lstm_kernel": np.zeros((3, 8))})
    p = trees.parity(cells, trees.TreesParams())["probe"]
    assert p["passed"] is False and "NaN in grad:embedding of jax-packed" in p["summary"]
    cells[2]["artifacts"], cells[2]["metrics"] = {}, {}
    cells[1]["status"] = "skipped"
    p = trees.parity(cells, trees.TreesParams())["probe"]
    assert p["passed"] is None
    assert {n["cell"] for n in p["not_compared"]} == {"tensorflow-packed", "jax-packed"}


def test_digits_probe_curves_of_different_lengths_fail(tmp_path):
    cells = []
    for framework, steps in (("torch", 23), ("jax", 22)):
        path = tmp_path / f"{framework}.npz"
        np.savez(path, logits=np.zeros((4, 10)), curve=np.ones(steps), **{"grad:fc1.weight": np.ones((3, 2))})
        cells.append({"framework": framework, "mode": "m", "status": "ok",
                      "artifacts": {"parity_probe": str(path)}})
    p = digits.parity(cells, digits.DigitsParams())["probe"]
    assert p["passed"] is False and "curve: torch-m has shape (23,), jax-m has (22,)" in p["summary"]


def test_a_diverged_run_fails_parity_naming_the_cell_end_to_end(tmp_path):
    """lr 1e38 from phi = -3: phi overflows to inf on the first step. The cells stay ok (a diverged
    run is a result, not a crash: TensorBoard skips what it cannot bin) and parity FAILs on the inf."""
    out = tmp_path / "run"
    result = run_cli("run", "exponent", "--frameworks", "jax", "--modes", "eager,jit", "--variant", "manual",
                     "--steps", "20", "--threads", "1", "--set", "lr=1e38", "--set", "init_phi=-3",
                     "--out", str(out))
    results = json.loads((out / "results.json").read_text())
    assert [c["status"] for c in results["cells"]] == ["ok", "ok"], result.stdout + result.stderr
    parity = results["parity"]["exponent"]["manual"]
    assert parity["passed"] is False and parity["verdict"] == "FAIL"
    line = next(line for line in result.stdout.splitlines() if line.startswith("parity exponent/manual"))
    assert "FAIL" in line and "inf in phi of jax-eager" in line
