"""`spotdiff where` finds one planted difference at a time, in one framework, and nothing in a
clean run. The planted task (tests/planted/, test-only) runs one small JAX network in every
framework's child; `--set plant=WHAT:FRAMEWORK` flips one convention in one of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

PLANTED = Path(__file__).parent / "planted"
# (plant, extra --set, frameworks, step, phase, layer or parameter (None: any), confirmed cause).
# Every plant shows at step 0, so one step is recorded. The vote needs three frameworks: two cases
# (a forward and an update plant, in different frameworks) run three; the others run the planted
# framework against one other, half the children on two cores.
VOTE = "torch,tensorflow,jax"
CASES = [
    ("flatten_order:tensorflow", (), VOTE, 0, "forward", "flatten", "flatten_order"),
    ("same_padding:torch", (), "torch,jax", 0, "forward", "conv", "same_padding"),
    ("batchnorm_eps:tensorflow", (), "tensorflow,jax", 0, "forward", "bn", "batchnorm_eps"),
    ("batchnorm_momentum:jax", (), "torch,jax", 0, "update", "bn.running_mean", "batchnorm_momentum"),
    ("layernorm_eps:jax", (), "tensorflow,jax", 0, "forward", "ln", "layernorm_eps"),
    ("gru_reset_after:tensorflow", (), "torch,tensorflow", 0, "forward", "gru", "gru_reset_after"),
    ("rmsprop_eps:torch", ("optimizer=rmsprop",), VOTE, 0, "update", None, "rmsprop_eps"),
]


def where(tmp_path: Path, plant: str, frameworks: str, steps: int, *sets: str) -> dict:
    args = ["where", "planted", "--task-module", str(PLANTED), "--set", f"plant={plant}",
            "--frameworks", frameworks, "--steps", str(steps)]
    for item in sets:
        args += ["--set", item]
    result = run_cli(*args, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    return {**json.loads((tmp_path / "where.json").read_text()), "stdout": result.stdout}


@pytest.mark.parametrize("plant,sets,frameworks,step,phase,name,cause", CASES, ids=[c[0] for c in CASES])
def test_where_names_the_planted_step_layer_framework_and_cause(tmp_path, plant, sets, frameworks, step,
                                                                 phase, name, cause):
    found = where(tmp_path, plant, frameworks, 1, *sets)
    first = found["base"]["first"]["row"]
    assert (first["step"], first["phase"]) == (step, phase), found["summary"]
    if name is not None:
        assert first["name"] == name, found["summary"]
    framework = plant.split(":")[1]
    assert framework in found["base"]["first"]["pair"]
    if frameworks == VOTE:  # the two others agree: the planted one is named
        assert found["base"]["odd_one_out"] == framework
        assert f"{framework} is the odd one out" in found["stdout"]
    else:  # two frameworks: no vote, and none claimed
        assert found["base"]["odd_one_out"] is None and "odd one out" not in found["stdout"]
    assert found["cause"] is not None and found["cause"]["key"] == cause, found["summary"]
    assert found["cause"]["outcome"] == "confirmed"
    assert found["cause"]["max_ratio_after"] <= found["threshold"] < found["cause"]["max_ratio_before"]
    # every other candidate that was rerun did not remove the divergence
    assert all(c["outcome"] != "confirmed" for c in found["causes"] if c["key"] != cause)
    # the children imported JAX only (RECORDS_WITH): no TensorFlow or PyTorch in their versions
    assert all(set(v) <= {"jax", "jaxlib", "flax", "optax"} for v in found["versions"].values())


def test_a_clean_run_finds_no_divergence_and_names_no_cause(tmp_path):
    found = where(tmp_path, "", VOTE, 2)  # two steps: the updated weights and running stats agree too
    assert found["base"]["status"] == "no divergence", found["summary"]
    assert found["cause"] is None and found["base"]["max_ratio"] < found["threshold"]
    assert {row["key"] for row in found["base"]["pairs"]["torch|jax"]["rows"]} >= {
        "1/forward/out", "1/param/bn.running_var"}
