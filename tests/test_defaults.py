"""`spotdiff defaults` and `run --hparams`: known differences are found by measurement, aligned
settings agree within the stated tolerance, and failures become rows or one-line errors."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
from conftest import run_cli

from spotdiff.hparams import native_kwargs
from spotdiff.probes.defaults import compare
from spotdiff.probes.defaults.audit import run_audit
from spotdiff.tasks.exponent.spec import PARITY_FINAL_TOL, PARITY_TRAJECTORY_TOL, ExponentParams

PROBES = Path(__file__).resolve().parents[1] / "src" / "spotdiff" / "probes" / "defaults"


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    """One real audit of every component in every framework, through the command line."""
    out = tmp_path_factory.mktemp("defaults")
    result = run_cli("defaults", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return json.loads((out / "defaults.json").read_text()), out, result.stdout


def row(results, name):
    (found,) = [r for r in results["components"] if r["component"] == name]
    return found


def conventions(results, name, mode="aligned"):
    return {fw: d["conventions"] for fw, d in row(results, name)[mode]["diagnosis"].items()}


def test_every_framework_and_component_ran(audit):
    results, _, _ = audit
    assert {f: s["status"] for f, s in results["frameworks"].items()} == {
        "torch": "ok",
        "tensorflow": "ok",
        "jax": "ok",
    }
    for r in results["components"]:
        for fw, state in r["frameworks"].items():
            assert state["status"] == "ok" or (r["component"], fw) == ("adam-wd", "jax"), (
                r["component"],
                fw,
                state,
            )


def test_rmsprop_eps_placement_is_measured(audit):
    results, _, _ = audit
    rms = row(results, "rmsprop")
    assert rms["aligned"]["max"] > 100 * compare.TOLERANCE  # aligning rho and eps does not remove it
    found = conventions(results, "rmsprop")
    assert found["torch"]["eps"] == "outside sqrt"
    assert found["tensorflow"]["eps"] == found["jax"]["eps"] == "inside sqrt"
    assert all(d["explained"] for d in rms["aligned"]["diagnosis"].values())
    assert any(c.startswith("eps: torch outside sqrt") for c in rms["aligned"]["causes"])


def test_keras_adam_uses_epsilon_hat(audit):
    results, _, _ = audit
    found = conventions(results, "adam")
    assert found["tensorflow"]["eps"].startswith("eps-hat")
    assert found["torch"]["eps"] == found["jax"]["eps"] == "added to sqrt(v_hat)"
    adam = row(results, "adam")["aligned"]["deviation"]
    assert adam["jax"]["value"] <= compare.TOLERANCE < adam["tensorflow"]["value"]


def test_weight_decay_coupled_in_torch_adam_decoupled_in_keras_and_adamw(audit):
    results, _, _ = audit
    wd = conventions(results, "adam-wd")
    assert wd["torch"]["weight_decay"].startswith("coupled")
    assert wd["tensorflow"]["weight_decay"].startswith("decoupled")
    assert row(results, "adam-wd")["frameworks"]["jax"]["status"] == "n/a"  # optax.adam has no weight_decay
    assert all(c["weight_decay"].startswith("decoupled") for c in conventions(results, "adamw").values())


def test_batchnorm_momentum_and_variance_conventions(audit):
    results, _, _ = audit
    found = conventions(results, "batchnorm")
    assert found["torch"] == {
        "momentum": "weight of the new batch statistic",
        "running variance": "unbiased (n-1)",
    }
    for fw in ("tensorflow", "jax"):
        assert found[fw] == {"momentum": "weight of the old running value", "running variance": "biased (n)"}
    momentum = [r for r in row(results, "batchnorm")["declared"] if r["neutral"] == "momentum"][0]
    assert [momentum["frameworks"][f]["default"] for f in ("torch", "tensorflow", "jax")] == [0.1, 0.99, 0.99]


def test_default_initialisers_identified_by_sampling(audit):
    results, _, _ = audit
    inits = {(r["component"], r["param"]): r["frameworks"] for r in results["initialisers"]}
    dense = inits[("dense", "weight")]  # (out 128, in 256)
    assert dense["torch"]["identified"] == "U(±1/sqrt(fan_in))"
    assert dense["torch"]["max"] <= 256**-0.5 < 1.03 * dense["torch"]["max"]
    assert dense["tensorflow"]["identified"].startswith("glorot uniform")
    assert dense["tensorflow"]["max"] <= (6 / 384) ** 0.5 < 1.03 * dense["tensorflow"]["max"]
    assert dense["jax"]["identified"].startswith("lecun normal")
    assert inits[("dense", "bias")]["tensorflow"]["identified"] == "zeros"
    assert inits[("lstm", "bias_ih")]["tensorflow"]["identified"] == "zeros, forget-gate block ones"
    assert inits[("lstm", "weight_hh")]["tensorflow"]["identified"] == "orthogonal"
    embedding = inits[("embedding", "weight")]
    assert (embedding["torch"]["identified"], embedding["tensorflow"]["identified"]) == (
        "N(0, 1)",
        "U(±0.05)",
    )


@pytest.mark.parametrize(
    "name",
    ["sgd", "sgd-nesterov", "adagrad", "dense", "conv2d", "lstm", "embedding", "dropout", "cross-entropy"],
)
def test_aligned_settings_agree_within_tolerance(audit, name):
    results, _, _ = audit
    found = row(results, name)
    assert found["aligned"]["max"] is not None and found["aligned"]["max"] <= compare.tolerance(name)
    assert found["aligned"]["same"] and found["verdict"] in ("same", "defaults differ; aligned: same")


def test_native_differences_and_their_causes(audit):
    results, _, _ = audit
    conv = row(results, "conv2d")
    assert conv["native"]["max"] is None and "shape" in conv["native"]["deviation"]["jax"]["note"]
    assert conventions(results, "conv2d", "native")["jax"]["padding"] == "same"
    ce = conventions(results, "cross-entropy", "native")
    assert ce["tensorflow"]["input"].startswith("probabilities") and ce["torch"]["input"] == "logits"
    assert ce["jax"]["reduction"].startswith("none")
    assert "rho" in row(results, "rmsprop")["native"]["causes"][0]  # declared: 0.99 vs 0.9
    assert conventions(results, "gru")["jax"]["reset gate"] == "r*(W_hn h), no b_hn"


def test_outputs_table_json_and_escaped_html(audit):
    results, out, stdout = audit
    assert "behaviour" in stdout and "rmsprop" in stdout and "eps: torch outside sqrt" in stdout
    html = (out / "defaults.html").read_text()
    assert html.startswith('<section class="spotdiff-defaults">') and html.isascii()
    assert "<script" not in html and "http" not in html and "src=" not in html
    assert "&lt;required&gt;" in html  # values are escaped, never markup
    assert results["schema"] == 1 and results["tolerance"] == compare.TOLERANCE


def test_unknown_component_is_one_line_exit_2():
    result = run_cli("defaults", "lstm", "transformer")
    assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("spotdiff: error: unknown component 'transformer'")


@pytest.mark.parametrize(
    "script,expected",
    [
        ("import os; os.abort()", "child killed by SIGABRT"),
        ("import sys; print('boom', file=sys.stderr); sys.exit(3)", "child exited with code 3: boom"),
        ("import time; time.sleep(60)", "child timed out after 1 s"),
    ],
)
def test_broken_child_gives_failed_rows(tmp_path, monkeypatch, script, expected):
    (tmp_path / "broken_defaults_child.py").write_text(script + "\n")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    )
    results, _ = run_audit(
        ["sgd", "dense"],
        ["torch", "jax"],
        out_dir=tmp_path / "out",
        timeout_s=1 if "sleep" in script else 60,
        child_module="broken_defaults_child",
    )
    assert results["frameworks"]["torch"]["status"] == "failed"
    assert results["frameworks"]["torch"]["error"] == expected
    for r in results["components"]:
        assert r["frameworks"]["torch"] == {"status": "failed", "error": expected, "notes": []}
        assert r["verdict"] == "too few frameworks ran"
    assert (tmp_path / "out" / "defaults.json").exists() and (tmp_path / "out" / "defaults.html").exists()


def test_probe_files_have_the_same_functions_in_the_same_order():
    def public(name):
        tree = ast.parse((PROBES / name).read_text())
        return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]

    expected = ["versions", "declared", "run_optimizer", "run_layer", "sample_init"]
    assert public("torch_probe.py") == public("tf_probe.py") == public("jax_probe.py") == expected


def test_name_map():
    assert native_kwargs("torch", "rmsprop", {"rho": 0.9, "eps": 1e-7}) == {"alpha": 0.9, "eps": 1e-7}
    assert native_kwargs("jax", "rmsprop", {"rho": 0.9}) == {"decay": 0.9}
    assert native_kwargs("torch", "adam", {"beta1": 0.8, "beta2": 0.99}) == {"betas": (0.8, 0.99)}
    assert native_kwargs("tensorflow", "cross-entropy", {"reduction": "mean"}) == {
        "reduction": "sum_over_batch_size"
    }
    with pytest.raises(ValueError):
        native_kwargs("jax", "adam", {"weight_decay": 0.1})


def test_exponent_hparams_choose_what_is_passed():
    assert ExponentParams(optimizer="rmsprop").optimizer_hparams() == {"rho": 0.9, "eps": 1e-7}
    assert ExponentParams(optimizer="rmsprop", hparams="native").optimizer_hparams() == {}
    assert ExponentParams(optimizer="adam", hparams="native", eps=1e-6).optimizer_hparams() == {
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-6,
    }


def test_bad_hparams_is_one_line_exit_2():
    result = run_cli("run", "exponent", "--hparams", "sideways")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "hparams" in lines[0] and "'native'" in lines[0]


def _exponent(tmp_path, *args):
    result = run_cli(
        "run",
        "exponent",
        "--variant",
        "optimizer",
        "--modes",
        "eager",
        "--steps",
        "300",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
        *args,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert [c["status"] for c in results["cells"]] == ["ok"] * 3, [c["error"] for c in results["cells"]]
    return results["parity"]["exponent"]["optimizer"]


def test_exponent_aligned_parity_passes(tmp_path):
    parity = _exponent(tmp_path, "--set", "optimizer=adam", "--set", "hparams=aligned")
    assert parity["passed"] is True
    assert (
        parity["max_trajectory_dev"] <= PARITY_TRAJECTORY_TOL and parity["max_final_dev"] <= PARITY_FINAL_TOL
    )


def test_exponent_native_rmsprop_differs_and_is_not_required(tmp_path):
    parity = _exponent(tmp_path, "--set", "optimizer=rmsprop", "--hparams", "native")
    assert parity["passed"] is None and parity["expected"] is False
    assert parity["summary"].startswith("not expected with --hparams native")
    assert parity["max_trajectory_dev"] > 10 * PARITY_TRAJECTORY_TOL  # torch alpha 0.99 vs rho 0.9
