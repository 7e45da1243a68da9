"""The shipped porting examples (examples/port/): every model builds and runs in its own framework with
the parameter count examples/port/README.md states, and `spotdiff port` passes each faithful port
(exit 0) and catches each planted porting bug at the right layer with the right cause (exit 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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


# `spotdiff port` on every example: (id, model, targets, expected exit status).
FAITHFUL = [(model, model, ("keras_model.py", "flax_model.py"), 0) for model in sorted(INPUTS)]
# A one-bug copy: (file, step, phase, tensor named with the source's names, confirmed cause).
BUGGY = [
    ("resnet_block/keras_buggy_padding.py", 0, "forward", "conv1", "same_padding"),
    ("resnet_block/flax_buggy_padding.py", 0, "forward", "conv1", "same_padding"),
    ("resnet_block/keras_buggy_momentum.py", 0, "update", "bn1.running_mean", "batchnorm_momentum"),
    ("gru_classifier/keras_buggy_reset_after.py", 0, "forward", "gru", "gru_reset_after"),
    ("transformer_block/keras_buggy_ln_eps.py", 0, "forward", "ln1", "layernorm_eps"),
    ("transformer_block/flax_buggy_gelu.py", 0, "forward", "gelu", "gelu"),
]
STOCK_GRU = "gru_classifier/flax_stock_grucell.py"  # nnx.GRUCell: no recurrent bias, 48 parameters fewer
COMMANDS = FAITHFUL + [(file, file.split("/")[0], (file.split("/")[1],), 1) for file, *_ in BUGGY]
COMMANDS.append((STOCK_GRU, "gru_classifier", ("flax_stock_grucell.py",), 2))


def port_args(model: str, targets: tuple[str, ...]) -> list[str]:
    specs = [f"torch:{EXAMPLES / model / 'torch_model.py'}:build"]
    specs += [f"{FRAMEWORK_OF[t.split('_')[0]]}:{EXAMPLES / model / t}:build" for t in targets]
    return ["port", *specs, "--input", INPUTS[model], "--steps", "2"]


def start_port(model: str, targets: tuple[str, ...], out: Path, core: int) -> subprocess.Popen:
    """`spotdiff port` as a user runs it, on one core: its recorders pin themselves inside the cores
    their parent may use, so two commands on two cores never share one."""
    command = [sys.executable, "-m", "spotdiff", *port_args(model, targets), "--out", str(out / "run")]
    with open(out / "stdout.txt", "w") as stdout, open(out / "stderr.txt", "w") as stderr:
        return subprocess.Popen(command, stdout=stdout, stderr=stderr, env={**os.environ, "COLUMNS": "200"},
                                preexec_fn=lambda: os.sched_setaffinity(0, {core}))


@pytest.fixture(scope="module")
def ported(tmp_path_factory) -> dict[str, dict]:
    """id -> {returncode, stdout, stderr, result (port.json)}: every `spotdiff port` command of this
    module, run once. Two lanes of commands, one per core, run side by side: a command alone leaves a
    core idle while its source or its cause reruns record."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    lanes = [COMMANDS[lane::len(cores)] for lane in range(len(cores))]
    running: dict[int, tuple] = {}
    found = {}
    while any(lanes) or running:
        for lane, core in enumerate(cores):
            if lane not in running and lanes[lane]:
                case_id, model, targets, _ = lanes[lane].pop(0)
                out = tmp_path_factory.mktemp("port")
                child = start_port(model, targets, out, core)
                running[lane] = (case_id, out, child, time.monotonic())
        for lane, (case_id, out, child, began) in list(running.items()):
            if child.poll() is None and time.monotonic() - began < 600:
                continue
            if child.poll() is None:  # SIGTERM: the command stops its own recorders on the way out
                child.terminate()
            child.wait(timeout=60)
            document = out / "run" / "port.json"
            found[case_id] = {"returncode": child.returncode, "stdout": (out / "stdout.txt").read_text(),
                              "stderr": (out / "stderr.txt").read_text(),
                              "result": json.loads(document.read_text()) if document.exists() else None}
            del running[lane]
        time.sleep(0.2)
    return found


@pytest.mark.parametrize("model", sorted(INPUTS))
def test_a_faithful_port_passes_with_every_tensor_within_the_noise_floor(ported, model):
    got = ported[model]
    assert got["returncode"] == 0, got["stdout"][-3000:] + got["stderr"][-3000:]
    result = got["result"]
    assert result["base"]["status"] == "no divergence", result["summary"]
    assert result["base"]["max_ratio"] < result["threshold"] and result["cause"] is None
    assert result["frameworks"] == ["torch", "keras", "flax"]
    for pair in ("torch|keras", "torch|flax"):
        keys = {row["key"] for row in result["base"]["pairs"][pair]["rows"]}
        assert "1/loss" in keys and any(key.startswith("1/param/") for key in keys), (pair, sorted(keys)[:20])


@pytest.mark.parametrize("file,step,phase,name,cause", BUGGY, ids=[b[0] for b in BUGGY])
def test_a_port_with_one_bug_fails_at_the_right_layer_with_the_cause_confirmed(ported, file, step, phase,
                                                                                name, cause):
    got = ported[file]
    assert got["returncode"] == 1, got["stdout"][-3000:] + got["stderr"][-3000:]
    result = got["result"]
    first = result["base"]["first"]["row"]
    assert (first["step"], first["phase"], first["name"]) == (step, phase, name), result["summary"]
    assert result["cause"] is not None and result["cause"]["key"] == cause, result["summary"]
    assert result["cause"]["outcome"] == "confirmed", result["summary"]
    assert result["cause"]["max_ratio_after"] <= result["threshold"] < result["cause"]["max_ratio_before"]
    assert name in got["stdout"] and result["cause"]["cause"] in got["stdout"]


def test_the_stock_flax_gru_cell_is_refused_with_both_parameter_counts_on_one_line(ported):
    got = ported[STOCK_GRU]
    assert got["returncode"] == 2 and got["result"] is None, got["stdout"][-3000:] + got["stderr"][-3000:]
    line = got["stderr"].strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert "different parameter counts" in line and "2500" in line and "2452" in line, line
