"""`spotdiff where` finds one planted difference at a time, in one framework, and nothing in a
clean run. The planted task (tests/planted/, test-only) runs one small JAX network in every
framework's child; `--set plant=WHAT:FRAMEWORK` flips one convention in one of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

PLANTED = Path(__file__).parent / "planted"
# (plant, extra --set, step, phase, layer or parameter (None: any), confirmed cause)
CASES = [
    ("flatten_order:tensorflow", (), 0, "forward", "flatten", "flatten_order"),
    ("same_padding:torch", (), 0, "forward", "conv", "same_padding"),
    ("batchnorm_eps:tensorflow", (), 0, "forward", "bn", "batchnorm_eps"),
    ("batchnorm_momentum:jax", (), 0, "update", "bn.running_mean", "batchnorm_momentum"),
    ("layernorm_eps:jax", (), 0, "forward", "ln", "layernorm_eps"),
    ("gru_reset_after:tensorflow", (), 0, "forward", "gru", "gru_reset_after"),
    ("rmsprop_eps:torch", ("optimizer=rmsprop",), 0, "update", None, "rmsprop_eps"),
]


def where(tmp_path: Path, plant: str, *sets: str) -> dict:
    args = ["where", "planted", "--task-module", str(PLANTED), "--set", f"plant={plant}", "--steps", "2"]
    for item in sets:
        args += ["--set", item]
    result = run_cli(*args, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    return {**json.loads((tmp_path / "where.json").read_text()), "stdout": result.stdout}


@pytest.mark.parametrize("plant,sets,step,phase,name,cause", CASES, ids=[c[0] for c in CASES])
def test_where_names_the_planted_step_layer_framework_and_cause(tmp_path, plant, sets, step, phase, name,
                                                                 cause):
    found = where(tmp_path, plant, *sets)
    first = found["base"]["first"]["row"]
    assert (first["step"], first["phase"]) == (step, phase), found["summary"]
    if name is not None:
        assert first["name"] == name, found["summary"]
    framework = plant.split(":")[1]
    assert found["base"]["odd_one_out"] == framework
    assert found["cause"] is not None and found["cause"]["key"] == cause, found["summary"]
    assert found["cause"]["outcome"] == "confirmed"
    assert found["cause"]["max_ratio_after"] <= found["threshold"] < found["cause"]["max_ratio_before"]
    assert f"{framework} is the odd one out" in found["stdout"]
    # every other candidate that was rerun did not remove the divergence
    assert all(c["outcome"] != "confirmed" for c in found["causes"] if c["key"] != cause)


def test_a_clean_run_finds_no_divergence_and_names_no_cause(tmp_path):
    found = where(tmp_path, "")
    assert found["base"]["status"] == "no divergence", found["summary"]
    assert found["cause"] is None and found["base"]["max_ratio"] < found["threshold"]
