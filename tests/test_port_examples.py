"""The shipped porting examples (examples/port/): every model builds and runs in its own framework with
the parameter count examples/port/README.md states, and `spotdiff port` passes each faithful port
(exit 0) and catches each planted porting bug at the right layer with the right cause (exit 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "port"
SUPPORT = Path(__file__).parent / "port_examples_support.py"
INPUTS = {"resnet_block": "float32[8,3,16,16]", "gru_classifier": "int64[8,12]",
          "transformer_block": "float32[8,10,32]"}
OUTPUTS = {"resnet_block": [8, 10], "gru_classifier": [8, 4], "transformer_block": [8, 10, 32]}
PARAMS = {"resnet_block": 938, "gru_classifier": 2500, "transformer_block": 12704}
# Files whose parameter count differs from the source's on purpose (nnx.GRUCell and Keras'
# reset_after=False have no recurrent bias: 3 x 16 fewer).
OWN_PARAMS = {"gru_classifier/keras_buggy_reset_after.py": 2452, "gru_classifier/flax_stock_grucell.py": 2452}
FRAMEWORK_OF = {"torch": "torch", "keras": "keras", "flax": "flax"}  # file prefix -> framework


def example_files() -> dict[str, list[Path]]:
    """Framework -> every example file written for it."""
    found: dict[str, list[Path]] = {}
    for path in sorted(EXAMPLES.glob("*/*.py")):
        found.setdefault(FRAMEWORK_OF[path.name.split("_")[0]], []).append(path)
    return found


@pytest.fixture(scope="module")
def built() -> dict[str, dict]:
    """'model/file.py' -> {params, output, finite, framework}: one child per framework builds all its
    files, the three children side by side."""
    children = {}
    for framework, paths in example_files().items():
        cases = [f"{p}:{INPUTS[p.parent.name]}" for p in paths]
        children[framework] = subprocess.Popen(
            [sys.executable, str(SUPPORT), framework, *cases], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    found = {}
    for framework, child in children.items():
        stdout, stderr = child.communicate(timeout=300)
        assert child.returncode == 0, stderr[-3000:]
        for line in stdout.splitlines():
            if line.startswith("{"):
                got = json.loads(line)
                path = Path(got.pop("file"))
                found[f"{path.parent.name}/{path.name}"] = {**got, "framework": framework}
    return found


def test_every_model_has_a_port_in_each_framework_and_each_file_builds(built):
    for model in INPUTS:
        faithful = {f"{model}/{name}" for name in ("torch_model.py", "keras_model.py", "flax_model.py")}
        assert faithful <= set(built), sorted(built)
    assert len(built) == sum(len(paths) for paths in example_files().values())


@pytest.mark.parametrize("model", sorted(INPUTS))
def test_each_version_of_a_model_has_the_same_parameter_count_and_output(built, model):
    for name, got in built.items():
        if name.startswith(f"{model}/"):
            assert got["params"] == OWN_PARAMS.get(name, PARAMS[model]), (name, got)
            assert got["output"] == OUTPUTS[model] and got["finite"], (name, got)
