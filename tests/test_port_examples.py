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
def built(finished) -> dict[str, dict]:
    """'model/file.py' -> {params, output, finite, framework}: one child per framework built all its files."""
    found = {}
    for framework in example_files():
        got = finished[f"build:{framework}"]
        assert got["returncode"] == 0, got["stderr"][-3000:]
        for line in got["stdout"].splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                path = Path(row.pop("file"))
                found[f"{path.parent.name}/{path.name}"] = {**row, "framework": framework}
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


def expected_s(key: str) -> float:
    """Seconds a job took on an idle machine (a port command: its source, targets and cause reruns)."""
    if key.startswith("build:"):
        return {"flax": 16, "keras": 10, "torch": 4}[key[6:]]
    if key == f"port:{STOCK_GRU}":
        return 8  # refused after the targets record: no comparison, no reruns
    return 30 if "/flax_buggy" in key else 20  # Flax steps eagerly in every cause rerun


def jobs() -> list[tuple[str, list[str]]]:
    """(key, command) of every child this module runs, the longest first (two cores stay busy)."""
    found = [(f"port:{case_id}", [sys.executable, "-m", "spotdiff", *port_args(model, targets)])
             for case_id, model, targets, _ in COMMANDS]
    found += [(f"build:{framework}", [sys.executable, str(SUPPORT), framework,
                                      *(f"{p}:{INPUTS[p.parent.name]}" for p in paths)])
              for framework, paths in example_files().items()]
    return sorted(found, key=lambda job: -expected_s(job[0]))


def start(command: list[str], out: Path, core: int) -> subprocess.Popen:
    """A child on one core (a port command's recorders pin themselves inside the cores their parent
    may use, so two children on two cores never share one); stdout and stderr to files in `out`."""
    with open(out / "stdout.txt", "w") as stdout, open(out / "stderr.txt", "w") as stderr:
        return subprocess.Popen(command, stdout=stdout, stderr=stderr,
                                env={**os.environ, "COLUMNS": "200", "KERAS_BACKEND": "tensorflow"},
                                preexec_fn=lambda: os.sched_setaffinity(0, {core}))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict[str, dict]:
    """key -> {returncode, stdout, stderr, result (port.json or None)} of every job: run once, two at
    a time (one per core) so neither core idles while a command records its source or its reruns."""
    queue, cores = jobs(), sorted(os.sched_getaffinity(0))[:2]
    running: dict[int, tuple] = {}
    found = {}
    while queue or running:
        for core in cores:
            if core not in running and queue:
                key, command = queue.pop(0)
                out = tmp_path_factory.mktemp("job")
                if key.startswith("port:"):
                    command = [*command, "--out", str(out / "run")]
                running[core] = (key, out, start(command, out, core), time.monotonic())
        for core, (key, out, child, began) in list(running.items()):
            if child.poll() is None and time.monotonic() - began < 600:
                continue
            if child.poll() is None:  # SIGTERM: a port command stops its own recorders on the way out
                child.terminate()
            child.wait(timeout=60)
            document = out / "run" / "port.json"
            found[key] = {"returncode": child.returncode, "stdout": (out / "stdout.txt").read_text(),
                          "stderr": (out / "stderr.txt").read_text(),
                          "result": json.loads(document.read_text()) if document.exists() else None}
            del running[core]
        time.sleep(0.2)
    return found


@pytest.fixture(scope="module")
def ported(finished) -> dict[str, dict]:
    """Case id -> the `spotdiff port` command's outcome."""
    return {key[5:]: got for key, got in finished.items() if key.startswith("port:")}


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
