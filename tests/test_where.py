"""`spotdiff where`: the first divergence, the odd framework out and a cause confirmed by a rerun.

The comparison logic is tested on hand-made rows (no framework); the real runs are shared in
module fixtures at 3-5 recorded steps.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_cli

from spotdiff.locate import compare, verdict
from spotdiff.locate.causes import candidates


def _where(tmp_path_factory, name: str, *args: str) -> dict:
    out = tmp_path_factory.mktemp(name)
    result = run_cli("where", *args, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((out / "where.json").read_text())
    document["stdout"], document["out"] = result.stdout, out
    return document


@pytest.fixture(scope="module")
def rmsprop(tmp_path_factory) -> dict:
    with pytest.MonkeyPatch.context() as patch:  # spotdiff's own cache, not the session's (conftest)
        patch.delenv("JAX_COMPILATION_CACHE_DIR")
        return _where(tmp_path_factory, "rmsprop", "exponent", "--set", "optimizer=rmsprop")


@pytest.fixture(scope="module")
def sgd_clean(tmp_path_factory) -> dict:
    return _where(tmp_path_factory, "sgd", "exponent", "--set", "optimizer=sgd", "--hparams", "aligned",
                  "--steps", "4")


# ---- the known parity failure: exponent with RMSprop ---------------------------------------------
def test_rmsprop_first_divergence_is_the_update_at_step_0(rmsprop):
    base = rmsprop["base"]
    assert base["status"] == "diverges"
    row = base["first"]["row"]
    assert (row["step"], row["phase"], row["name"]) == (0, "update", "phi")
    assert row["ratio"] > rmsprop["threshold"] and row["floor"] > 0
    # the gradient at step 0 is taken at the same phi: it agrees within the floor
    rows = base["pairs"]["torch|tensorflow"]["rows"]
    grad = next(r for r in rows if r["key"] == "0/grad/phi")
    assert grad["ratio"] < 1


def test_rmsprop_names_torch_as_the_odd_one_out(rmsprop):
    assert rmsprop["base"]["odd_one_out"] == "torch"
    assert rmsprop["base"]["pairs"]["tensorflow|jax"]["status"] == "no divergence"


def test_rmsprop_cause_is_eps_placement_confirmed_by_the_rerun(rmsprop):
    cause = rmsprop["cause"]
    assert cause["key"] == "rmsprop_eps" and cause["outcome"] == "confirmed"
    assert "torch" in cause["aligned_by"]
    assert cause["max_ratio_after"] <= rmsprop["threshold"] < cause["max_ratio_before"]
    text = rmsprop["stdout"]
    assert "RMSprop epsilon placement" in text and "torch is the odd one out" in text
    assert "step 0, update of phi" in text


def test_rmsprop_writes_html_and_measures_its_cost(rmsprop):
    html = (rmsprop["out"] / "where.html").read_text()
    assert "Where and why" in html and "outline: 3px" in html  # the first divergence is marked
    for name in ("torch", "tensorflow", "jax"):
        (first_round, *_) = rmsprop["cost"]["per_framework"][name]
        assert first_round["wall_s"] > 0 and first_round["peak_rss_mb"] > 50


def test_recorders_share_one_jax_compilation_cache_in_the_run_folder(rmsprop, monkeypatch, tmp_path):
    from spotdiff.locate.run import shared_compile_cache

    cache = rmsprop["out"] / "recorders" / "jax-compile-cache"
    assert len(list(cache.iterdir())) >= 2  # the JAX recorder's float32 and float64 steps at least
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    assert shared_compile_cache(tmp_path) == {
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-compile-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/mine")
    assert shared_compile_cache(tmp_path) == {}  # the user's own cache is left to JAX


def test_report_html_includes_the_where_section_when_the_run_folder_has_where_json(rmsprop, tmp_path):
    from spotdiff.report.html import render_report

    results = {"run_id": "where-in-report", "status": "done", "cells": []}
    for name in ("plain", "with"):
        (tmp_path / name).mkdir()
    plain = render_report(results, tmp_path / "plain").read_text()
    assert 'id="where"' not in plain  # no where.json: no section
    run_dir = tmp_path / "with"
    (run_dir / "where.json").write_text((rmsprop["out"] / "where.json").read_text())
    html = render_report(results, run_dir).read_text()
    assert '<section id="where">' in html and "Where and why: exponent" in html
    assert '<table class="heat">' in html and "outline: 3px" in html  # heat map, first divergence marked
    assert "torch vs jax" in html and "RMSprop epsilon placement" in html

# ---- a clean run: no divergence, with the largest ratio shown --------------------------------------
def test_clean_sgd_run_finds_no_divergence(sgd_clean):
    base = sgd_clean["base"]
    assert base["status"] == "no divergence", sgd_clean["summary"]
    assert base["max_ratio"] is not None and base["max_ratio"] < sgd_clean["threshold"]
    assert sgd_clean["cause"] is None and sgd_clean["causes"] == []
    assert "no divergence" in sgd_clean["stdout"] and "largest ratio" in sgd_clean["stdout"]


@pytest.fixture(scope="module")
def digits_clean(tmp_path_factory) -> dict:
    return _where(tmp_path_factory, "digits", "digits", "--frameworks", "torch,tensorflow,jax",
                  "--steps", "1", "--set", "batch_size=4", "--set", "limit_train=8", "--set", "epochs=1")


def test_digits_cnn_finds_no_divergence_with_every_run_in_float64(digits_clean):
    from spotdiff.tasks.digits.models import WHERE_LAYERS

    base = digits_clean["base"]
    assert base["failures"] == {}, base["failures"]  # a run narrower than its dtype fails in the child
    assert base["status"] == "no divergence", digits_clean["summary"]
    assert set(base["pairs"]) == {"torch|tensorflow", "torch|jax", "tensorflow|jax"}
    # Same maths in float64 differs by ~1e-16 against a float32 floor of ~1e-9: ratios near 1e-7.
    # A float64 run that is float32 inside (Keras' dtype policy left at float32) gave 2.26.
    assert base["max_ratio"] is not None and base["max_ratio"] < 1e-3 < digits_clean["threshold"]
    forward = [key.split("/")[2] for key in base["order"] if key.startswith("0/forward/")]
    assert forward == [name for name, _ in WHERE_LAYERS["pytorch-examples"]]
    assert forward[0] == "conv1" and forward[-1] == "fc2"
    assert "0/grad/conv1.weight" in base["order"] and "0/param/fc2.bias" in base["order"]


# ---- the comparison logic on hand-made numbers -------------------------------------------------------
def _rows(ratios: list[float | None]) -> list[compare.Row]:
    order = compare.entries([["dense", "dense"]], ["dense.weight"], 1)
    return [compare.Row(e.key, e.step, e.phase, e.name, e.kind, 0.0, 0.0, 1.0, r)
            for e, r in zip(order, ratios)]


def test_floor_is_measured_and_never_below_half_an_ulp():
    entry = compare.entries([], ["w"], 1)[-1]
    same = np.array([1.0, 2.0])
    row = compare.compare_tensor(entry, same, same, same, same)
    assert row.floor == pytest.approx(0.5 * 2.0**-23 * 2.0) and row.ratio == 0.0
    noisy = compare.compare_tensor(entry, same + 1e-6, same, same + 1e-4, same + 1e-4)
    assert noisy.floor == pytest.approx(1e-6) and noisy.ratio == pytest.approx(100.0)


def test_nan_gives_no_verdict_not_no_divergence():
    entry = compare.entries([], ["w"], 1)[-1]
    one = np.array([1.0])
    row = compare.compare_tensor(entry, np.array([math.nan]), one, one, one)
    assert row.ratio is None and "non-finite" in row.note
    assert verdict.pair_verdict([row])["status"] == "no verdict"
    # a divergence before missing data is still a divergence; missing data before it is not
    assert verdict.pair_verdict(_rows([0.1, 5.0, None, 0.1]))["status"] == "diverges"
    assert verdict.pair_verdict(_rows([0.1, None, 5.0, 0.1]))["status"] == "no verdict"


def test_introduced_is_where_the_ratio_grows_from_its_inputs():
    rows = _rows([30.0, 40.0, 45.0, 50.0])  # forward dense, loss, grad, param: carried on from dense
    first = verdict.pair_verdict(rows)["first"]
    assert rows[verdict.introduced(rows, first)[0]].key == "0/forward/dense"
    rows = _rows([0.5, 0.4, 0.3, 60.0])  # only the update differs: the optimiser introduced it
    first = verdict.pair_verdict(rows)["first"]
    assert rows[verdict.introduced(rows, first)[0]].key == "0/param/dense.weight"


def test_odd_one_out_needs_the_others_to_agree():
    d, n = "diverges", "no divergence"
    assert verdict.odd_one_out({("a", "b"): d, ("a", "c"): d, ("b", "c"): n}) == "a"
    assert verdict.odd_one_out({("a", "b"): d, ("a", "c"): d, ("b", "c"): d}) is None
    assert verdict.odd_one_out({("a", "b"): d}) is None


def test_candidates_follow_the_diverging_component():
    assert [c.key for c in candidates({"param"}, "rmsprop", "update")] == ["rmsprop_eps"]
    batchnorm = {c.key for c in candidates({"batchnorm"}, "sgd", "forward")}
    assert batchnorm == {"batchnorm_eps", "batchnorm_momentum"}
    assert candidates({"conv2d"}, "rmsprop", "forward")[0].key == "same_padding"


# ---- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,expected", [
    (["nosuchtask"], "unknown task 'nosuchtask'"),
    (["exponent", "--frameworks", "torch"], "at least two"),
    (["exponent", "--frameworks", "torch,mxnet"], "framework 'mxnet' cannot record exponent"),
    (["exponent", "--modes", "warp"], "has none of the modes warp"),
    (["exponent", "--set", "nosuchkey=1"], "unknown --set key 'nosuchkey'"),
    (["exponent", "--set", "optimizer=lbfgs"], "bad --set value for task exponent: optimizer"),
    (["exponent", "--hparams", "sideways"], "unknown --hparams 'sideways'"),
    (["exponent", "--steps", "0"], "--steps must be at least 1"),
    (["exponent", "--frameworks", "torch,jax", "--tfdbg"], "--tfdbg records the TensorFlow recorder"),
])
def test_bad_input_exits_2_with_one_line(args, expected):
    result = run_cli("where", *args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("spotdiff: error: ") and expected in lines[0]


# ---- sequences and trees: Adam-trained, three frameworks from shared weights -----------------------
TINY_SEQUENCES = ("--set", "n_train=16", "--set", "n_test=4", "--set", "max_len=12", "--set", "median_len=6",
                  "--set", "vocab=12", "--set", "embed=4", "--set", "hidden=4", "--set", "batch_size=8",
                  "--set", "epochs=1")
TINY_TREES = ("--set", "n_train=8", "--set", "n_test=4", "--set", "max_depth=2", "--set", "hidden=4",
              "--set", "batch_size=4", "--set", "epochs=1")


@pytest.fixture(scope="module")
def sequences_torch_jax(tmp_path_factory) -> dict:
    return _where(tmp_path_factory, "sequences", "sequences", "--frameworks", "torch,jax", "--hparams",
                  "aligned", "--steps", "2", *TINY_SEQUENCES)


@pytest.fixture(scope="module")
def trees_torch_tf(tmp_path_factory) -> dict:
    # torch against tensorflow only: JAX agrees with torch (sequences above), and its recorder is the
    # slow one here (a compile per rerun)
    return _where(tmp_path_factory, "trees", "trees", "--frameworks", "torch,tensorflow", "--hparams",
                  "aligned", "--steps", "2", *TINY_TREES)


def test_sequences_torch_and_jax_agree_to_rounding_in_float32_and_float64(sequences_torch_jax):
    base = sequences_torch_jax["base"]
    assert base["failures"] == {}, base["failures"]  # both recorded float64 (JAX with x64)
    assert base["status"] == "no divergence", sequences_torch_jax["summary"]
    # nn.LSTM vs a lax.scan cell, torch.optim.Adam vs optax.adam: the same maths, ratios ~1e-9
    assert base["max_ratio"] is not None and 0 < base["max_ratio"] < 1e-3
    layers = [key.split("/")[2] for key in base["order"] if key.startswith("0/forward/")]
    assert layers == ["embedding", "lstm", "last", "fc"]
    assert {"1/grad/lstm.kernel", "1/param/lstm.recurrent_kernel", "1/loss"} <= set(base["order"])
    stdout = sequences_torch_jax["stdout"]
    assert "no divergence" in stdout and "largest ratio" in stdout


def test_trees_keras_adam_differs_twice_and_only_both_alignments_together_remove_it(trees_torch_tf):
    """Adam's eps passed alike, yet Keras differs twice: epsilon-hat, and an embedding gradient
    (tf.IndexedSlices) applied occurrence by occurrence. Neither alone removes the divergence;
    together they do, so `where` names the pair, not one of them."""
    base = trees_torch_tf["base"]
    assert base["failures"] == {}, base["failures"]  # float64 recorded in both
    assert base["status"] == "diverges"
    row = base["first"]["row"]
    assert (row["step"], row["phase"]) == (0, "update") and row["ratio"] > 1e3
    assert "0/grad/embedding.weight" in base["order"]  # gradients agree: only the update differs
    rows = base["pairs"]["torch|tensorflow"]["rows"]
    grads = [r for r in rows if r["phase"] == "backward" and r["step"] == 0]
    assert grads and max(r["ratio"] for r in grads) < 1e-3
    single = {c["key"]: c["outcome"] for c in trees_torch_tf["causes"] if not c.get("combined")}
    assert single["adam_eps"] == "not confirmed" and single["sparse_grads"] == "not confirmed"
    cause = trees_torch_tf["cause"]
    assert cause["outcome"] == "confirmed", trees_torch_tf["summary"]
    assert set(cause["combined"]) == {"Adam epsilon-hat", "Keras sparse-gradient update"}  # eps value: same
    assert cause["max_ratio_after"] < 1e-3 < trees_torch_tf["threshold"]
    layers = [key.split("/")[2] for key in base["order"] if key.startswith("0/forward/")]
    assert layers == ["embedding", "combine", "fc"]


# ---- tfdbg v2: the TensorFlow recorder's dump, for TensorBoard's Debugger V2 -------------------------
READ_TFDBG = """
import json, sys
from tensorflow.python.debug.lib import debug_events_reader
with debug_events_reader.DebugDataReader(sys.argv[1]) as reader:
    reader.update()
    kinds = sorted({e.op_type for e in reader.executions(digest=True)})
    print(json.dumps({"executions": reader.num_executions(), "op_types": kinds}))
"""


def test_tfdbg_dump_is_written_in_the_run_folder_and_reads_back(tmp_path):
    out = tmp_path / "run"
    result = run_cli("where", "exponent", "--frameworks", "torch,tensorflow", "--steps", "1", "--tfdbg",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    root = (out / "tfdbg").resolve()
    assert f"tensorboard --logdir {root}" in result.stdout
    assert json.loads((out / "where.json").read_text())["tfdbg"] == str(root)
    # the reader Debugger V2 uses, in its own process: this one never imports TensorFlow
    read = subprocess.run([sys.executable, "-c", READ_TFDBG, str(root)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert read.returncode == 0, read.stderr[-2000:]
    found = json.loads(read.stdout.strip().splitlines()[-1])
    assert found["executions"] > 0 and "Pow" in found["op_types"]  # x**phi, the exponent's one layer
    again = run_cli("where", "exponent", "--frameworks", "torch,tensorflow", "--tfdbg", "--out", str(out))
    assert again.returncode == 2 and "exists already" in again.stderr  # a dump is never overwritten
