"""`spotdiff port` on the test-only models of tests/port_models/: faithful ports match within the
noise floor (exit 0), a planted LayerNorm epsilon and a wrong flatten order are found at the right
layer with the confirmed cause (exit 1), and every kind of bad input is one line and exit 2."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from conftest import run_cli

# Found, not imported: only the children import a framework (importing Keras here costs seconds).
MISSING = [m for m in ("torch", "keras", "tensorflow", "flax") if importlib.util.find_spec(m) is None]
if MISSING and os.environ.get("CI") != "true":
    pytest.skip(f"not installed: {', '.join(MISSING)}", allow_module_level=True)

MODELS = Path(__file__).parent / "port_models"
TORCH, KERAS, FLAX = (f"{fw}:{MODELS / f'{fw}_models.py'}" for fw in ("torch", "keras", "flax"))
KERAS_JAX = f"keras@jax:{MODELS / 'keras_models.py'}"  # Keras 3 on another backend: recorded the same


def port(out: Path, *args: str):
    result = run_cli("port", *args, "--out", str(out))
    found = json.loads((out / "port.json").read_text()) if (out / "port.json").exists() else None
    return result, found


@pytest.fixture(scope="module")
def faithful_conv(tmp_path_factory):
    """Conv -> BatchNorm -> relu -> flatten -> dense, PyTorch into Keras (on TensorFlow and on JAX)
    and Flax, all channels-last, trained on cross-entropy against seeded labels (`--labels`)."""
    out = tmp_path_factory.mktemp("faithful")
    return (*port(out, f"{TORCH}:ConvNet", f"{KERAS}:convnet", f"{FLAX}:ConvNet", f"{KERAS_JAX}:convnet",
                  "--input", "float32[4,2,4,4]", "--labels", "--dump-map", str(out / "map.toml")), out)


@pytest.fixture(scope="module")
def planted_eps(tmp_path_factory):
    """The MLP into Keras with LayerNormalization's default epsilon (1e-3) and into Flax faithfully."""
    return port(tmp_path_factory.mktemp("planted"), f"{TORCH}:MLP", f"{KERAS}:mlp_default_eps", f"{FLAX}:MLP",
                "--input", "float32[4,6]")


def test_a_faithful_conv_port_matches_within_the_floor(faithful_conv):
    result, found, out = faithful_conv
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert found["base"]["status"] == "no divergence" and found["cause"] is None
    assert found["base"]["max_ratio"] < found["threshold"]
    assert found["optimizer"]["loss"] == "cross_entropy"
    rows = {row["key"] for row in found["base"]["pairs"]["torch|keras"]["rows"]}
    # every layer's output, the loss, gradients, updated parameters and running statistics, by torch names
    assert {"1/forward/conv", "1/forward/bn", "1/forward/fc", "1/loss", "1/grad/conv.weight",
            "1/param/fc.weight", "1/param/bn.running_var"} <= rows
    # the dense layer after the flatten had its rows permuted (C, H, W) -> (H, W, C) in both targets
    assert found["flatten_permuted"] == {"keras": ["fc"], "flax": ["fc"], "keras@jax": ["fc"]}
    assert found["layouts"] == {"torch": "nchw", "keras": "nhwc", "flax": "nhwc", "keras@jax": "nhwc"}
    assert found["base"]["pairs"]["torch|keras@jax"]["status"] == "no divergence"
    assert found["versions"]["keras@jax"]["keras_backend"] == "jax"
    assert "keras: inputs given channels-last (NHWC)" in result.stdout
    assert any("running variance" in note for note in found["notes"])
    assert (out / "port.html").exists()
    assert '"conv" = "conv"  # conv2d' in (out / "map.toml").read_text()


def test_a_planted_layernorm_epsilon_is_found_at_its_layer_with_its_cause(planted_eps):
    result, found = planted_eps
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    first = found["base"]["first"]
    assert (first["row"]["step"], first["row"]["phase"], first["row"]["name"]) == (0, "forward", "ln")
    assert found["base"]["odd_one_out"] == "keras"  # torch and flax agree
    assert found["base"]["pairs"]["torch|flax"]["status"] == "no divergence"
    assert found["cause"]["key"] == "layernorm_eps" and found["cause"]["outcome"] == "confirmed"
    assert "keras" in found["cause"]["aligned_by"]
    assert found["cause"]["max_ratio_after"] <= found["threshold"] < found["cause"]["max_ratio_before"]
    assert "Cause: LayerNorm epsilon" in result.stdout and "keras is the odd one out" in result.stdout


def test_a_wrong_flatten_order_is_found_at_the_dense_layer(tmp_path):
    """The Flax net transposes to NCHW before flattening (as PyTorch): the rows must not be permuted."""
    result, found = port(tmp_path, f"{TORCH}:ConvNet", f"{FLAX}:convnet_chw_flatten",
                         "--input", "float32[4,2,4,4]")
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    first = found["base"]["first"]["row"]
    assert (first["step"], first["phase"], first["name"]) == (0, "forward", "fc")
    assert found["cause"]["key"] == "flatten_order" and found["cause"]["outcome"] == "confirmed"


def _one_line_exit_2(result):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("spotdiff: error:"), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


@pytest.mark.parametrize("args,says", [
    ((f"{TORCH}:MLP", f"{FLAX}:MLP", "--input", "float32[4,6"), "expected DTYPE[D0,D1,...]"),
    ((f"torch:{MODELS / 'missing.py'}:MLP", f"{FLAX}:MLP", "--input", "float32[4,6]"), "does not exist"),
    ((f"{TORCH}:MLP", f"jaxx:{MODELS / 'flax_models.py'}:MLP", "--input", "float32[4,6]"),
     "FRAMEWORK:PATH:FACTORY"),
], ids=["malformed-input", "missing-file", "unknown-framework"])
def test_bad_specs_stop_in_the_parent(tmp_path, args, says):
    assert says in _one_line_exit_2(run_cli("port", *args, "--out", str(tmp_path)))


@pytest.mark.parametrize("source,target,extra,says", [
    ("broken", "MLP", (), "the factory raised RuntimeError: this factory always fails"),
    ("MLP", "MLP", ("--input", "float32[4,5]"), "the model fails on the input float32[4, 5]"),
    ("MLP", "wider_mlp", (), "different parameter counts: the source has 99, the target 111"),
    ("MLP", "MLP", ("--map", "MAP"), "--map names 'fc9', which is not a layer with parameters of the source"),
], ids=["factory-raises", "fails-on-input", "parameter-counts", "map-names-missing"])
def test_bad_models_are_one_line_with_the_traceback_kept(tmp_path, source, target, extra, says):
    extra = tuple(str(tmp_path / "map.toml") if a == "MAP" else a for a in extra)
    (tmp_path / "map.toml").write_text('[layers]\nfc9 = "fc1"\n')
    args = [f"{TORCH}:{source}", f"{TORCH}:{target}", *extra]
    if "--input" not in extra:
        args += ["--input", "float32[4,6]"]
    line = _one_line_exit_2(run_cli("port", *args, "--out", str(tmp_path / "run")))
    assert says in line
    answers = list((tmp_path / "run").rglob("answer.json"))
    assert any("Traceback" in path.read_text() for path in answers)  # kept in the run folder


def test_out_refuses_a_folder_that_holds_a_port_check(tmp_path):
    (tmp_path / "port.json").write_text("{}")
    line = _one_line_exit_2(run_cli("port", f"{TORCH}:MLP", f"{TORCH}:MLP", "--input", "float32[4,6]",
                                    "--out", str(tmp_path)))
    assert "already holds a port check" in line


# The neutral pieces, in this process (numpy only): layouts, matching, specs.
def test_canonical_layouts_go_there_and_back_and_match_a_numpy_oracle():
    import numpy as np

    from spotdiff.port import canonical

    rng = np.random.default_rng(0)
    gru = {"weight_ih": rng.normal(size=(12, 5)), "weight_hh": rng.normal(size=(12, 4)),
           "bias_ih": rng.normal(size=12), "bias_hh": rng.normal(size=12)}
    kernel, recurrent, bias = canonical.gru_to_keras(gru, reset_after=True)
    assert kernel.shape == (5, 12) and bias.shape == (2, 12)
    assert np.array_equal(kernel[:, :4], gru["weight_ih"][4:8].T)  # Keras' first gate is z, torch's second
    back = canonical.gru_from_keras(kernel, recurrent, bias)
    assert all(np.array_equal(back[k], gru[k]) for k in gru)
    attention = {f"{n}_{p}": rng.normal(size=(8, 8) if p == "weight" else 8)
                 for n in ("q", "k", "v", "out") for p in ("weight", "bias")}
    native = canonical.attention_to_native(attention, heads=2)
    assert native["q_kernel"].shape == (8, 2, 4) and native["out_kernel"].shape == (2, 4, 8)
    assert all(np.array_equal(canonical.attention_from_native(native)[k], attention[k]) for k in attention)
    features = rng.normal(size=(3, 2, 4, 5))  # NCHW
    channels_last = canonical.feature_map_to_native(features).reshape(3, -1)  # a Keras/Flax flatten
    assert np.array_equal(canonical.flatten_to_canonical(channels_last, (4, 5, 2)), features.reshape(3, -1))


def _layer(name, kind, **shapes):
    return {"name": name, "kind": kind, "shapes": shapes, "config": {}}


def test_matching_pairs_in_order_transposes_raw_params_and_names_what_it_cannot_match(tmp_path):
    from spotdiff.port import matching

    source = [_layer("fc1", "dense", weight=(8, 6), bias=(8,)), _layer("act", "relu"),
              _layer("head", "other", w=(3, 8))]
    target = [_layer("dense", "dense", weight=(8, 6), bias=(8,)), _layer("re_lu", "relu"),
              _layer("out", "other", kernel=(8, 3))]
    pairs = matching.match(source, target)
    assert [(p.source, p.target, p.transform) for p in pairs] == [
        ("fc1", "dense", "none"), ("head", "out", "transpose"), ("act", "re_lu", "none")]
    matching.write_map(pairs, tmp_path / "map.toml", "torch:a.py:A", "keras:b.py:B")
    assert matching.read_map(tmp_path / "map.toml")["head"] == ("out", "transpose")
    dense, norm = {"weight": (8, 8), "bias": (8,)}, {"weight": (8,), "bias": (8,)}
    swapped = [_layer("x", "dense", **dense), _layer("y", "layernorm", **norm)]
    theirs = [_layer("ln", "layernorm", **norm), _layer("d", "dense", **dense)]
    with pytest.raises(matching.MatchError, match=r"cannot match x\.weight .* candidates: d \(dense"):
        matching.match(swapped, theirs)
    pinned = matching.match(swapped, theirs, {"x": ("d", "none"), "y": ("ln", "none")})
    assert [(p.source, p.target) for p in pinned] == [("x", "d"), ("y", "ln")]


def test_input_specs_parse_and_keras_backends_label_their_model(tmp_path):
    from spotdiff.port import specs

    parsed = specs.parse_inputs(["int32[8,16]:vocab=100", "float32[2,3]"])
    assert (parsed[0].dtype, parsed[0].shape, parsed[0].vocab) == ("int32", (8, 16), 100)
    (tmp_path / "m.py").write_text("def build(): pass\n")
    assert specs.parse_model(f"keras@jax:{tmp_path / 'm.py'}:build").label == "keras@jax"
    with pytest.raises(specs.UserError, match="vocab= is for integer inputs"):
        specs.parse_inputs(["float32[2]:vocab=3"])
