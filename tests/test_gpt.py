"""The gpt task: the corpus and its checksum, the model's neutral arithmetic, every framework x mode
trained for real at tiny sizes (all ok, parity within the fp32 tolerances, validation loss below the
unigram baseline; Keras on its TensorFlow and JAX backends), bf16 cells within their looser
tolerances, a diverging learning rate failing parity, bad data paths stopping the CLI with exit 2,
and `spotdiff where gpt`: nothing beyond the floor aligned, LayerNorm epsilon then GELU native."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from conftest import run_cli

from spotdiff.executors.local import skip_reason
from spotdiff.experiment import build_experiment, expand
from spotdiff.orchestrate import run_experiment
from spotdiff.tasks.gpt import spec

# Tiny, but long enough for a one-layer model to get past the unigram plateau (~100 steps).
LEARNS = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "batch_size": 8, "steps": 200,
          "lr": 3e-3, "eval_interval": 50, "warmup_steps": 10, "sample_tokens": 16, "peak_matmul_size": 256}
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, "batch_size": 2, "steps": 12,
        "eval_interval": 4, "warmup_steps": 2, "parity_steps": 10, "eval_batches": 2, "sample_tokens": 8,
        "peak_matmul_size": 64}
# Every native mode; Keras on two backends (its torch backend and op-by-op JAX add minutes, not news).
MODES = ["eager", "compile", "graph", "xla", "jit", "tensorflow", "jax-jit"]
MATRIX = [(c.framework, c.mode) for c in expand(build_experiment({"tasks": ["gpt"], "modes": MODES}))]
WHERE_TINY = [f"{k}={v}" for k, v in {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 16,
                                       "batch_size": 2, "steps": 4}.items()]


def _run(tmp_path_factory, name: str, overrides: dict, **settings) -> dict:
    settings.setdefault("modes", MODES)
    exp = build_experiment({"tasks": ["gpt"], "threads": 1, "device": "cpu", "overrides": overrides,
                            **settings})
    results, _ = run_experiment(exp, tmp_path_factory.mktemp(name), render=False, index=False)
    return results


@pytest.fixture(scope="module")
def fp32_run(tmp_path_factory):
    return _run(tmp_path_factory, "gpt-fp32", LEARNS)


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    return _run(tmp_path_factory, "gpt-bf16", TINY, precision="bf16")


def _cell(results, framework, mode):
    (cell,) = [c for c in results["cells"] if (c["framework"], c["mode"]) == (framework, mode)]
    assert cell["status"] == "ok", (cell["error"], cell["stderr_tail"])
    return cell


def test_corpus_is_generated_identically_and_checked():
    text = spec.corpus_bytes(spec.GptParams())
    assert hashlib.sha256(text).hexdigest() == spec.CORPUS_SHA256
    assert len(text) > 1_000_000 and text.isascii()
    data = spec.build_data(spec.GptParams(**TINY), 0)
    x, y = spec.batch(data["train_tokens"], data["train_offsets"][0], TINY["block_size"])
    assert x.shape == y.shape == (2, 16) and x.dtype == np.int32
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # targets are the next bytes
    assert len(data["val_tokens"]) == pytest.approx(0.1 * len(text), abs=1)
    assert 2.5 < spec.unigram_loss(data) < math.log(256)


def test_parameter_count_and_flops_match_the_hand_formula():
    p = spec.GptParams()  # L 4, E 128, T 128, V 256
    e, layers, t = 128, 4, 128
    per_layer = 12 * e * e + 13 * e  # qkv, proj, fc, proj weights; their biases and two LayerNorms
    assert spec.param_count(p) == layers * per_layer + 256 * e + t * e + 2 * e == 842_496
    assert spec.flops_per_token(p) == 6 * (842_496 - t * e) + 12 * layers * t * e


def test_shared_weights_follow_nanogpt_init():
    w = spec.shared_weights(spec.GptParams(), 0)
    assert set(w) == set(spec.weight_shapes(spec.GptParams()))
    assert np.std(w["transformer.h.0.mlp.c_fc.weight"]) == pytest.approx(0.02, rel=0.02)
    assert np.std(w["transformer.h.0.mlp.c_proj.weight"]) == pytest.approx(0.02 / math.sqrt(8), rel=0.02)
    assert not w["transformer.h.0.attn.c_attn.bias"].any() and (w["transformer.ln_f.weight"] == 1).all()


@pytest.mark.parametrize("framework,mode", MATRIX, ids=["-".join(m) for m in MATRIX])
def test_cell_trains_below_the_unigram_baseline(fp32_run, framework, mode):
    cell = _cell(fp32_run, framework, mode)
    m, s = cell["metrics"], cell["series"]
    assert m["precision"] == "fp32" and cell["environment"]["settings"]["precision"] == "fp32"
    assert m["param_count_ok"] is True and m["param_count"] == spec.param_count(spec.GptParams(**LEARNS))
    assert len(s["train_loss"]) == LEARNS["steps"]
    assert s["val_step"] == [1.0, 51.0, 101.0, 151.0, 200.0]
    assert s["train_loss"][0] == pytest.approx(math.log(256), abs=0.05)  # near-uniform at init
    assert m["val_loss"] < m["unigram_loss"] - 0.2, (m["val_loss"], m["unigram_loss"])
    assert m["val_bpb"] == pytest.approx(m["val_loss"] / math.log(2))
    assert m["tokens_per_s"] > 0 and m["first_step_s"] > 0 and m["device_matmul_peak_gflops"] > 0
    # At these sizes the model's matmuls are overhead-bound: MFU is tiny but must be computed right.
    assert m["mfu"] == pytest.approx(m["gflops_per_s"] / m["device_matmul_peak_gflops"])
    assert m["gflops_per_s"] == pytest.approx(m["flops_per_token"] * m["tokens_per_s"] / 1e9)
    assert m["sample"].startswith("The ") and len(m["sample"]) > 4
    assert m["peak_rss_mb"] > 0


def test_fp32_parity_passes_on_logits_gradients_and_losses(fp32_run):
    probe = fp32_run["parity"]["gpt"]["probe"]
    assert probe["verdict"] == "PASS", probe["summary"]
    assert probe["cells"] == len(MATRIX) and probe["precision"] == "fp32"
    by_label = {c["label"]: c for c in probe["checks"]}
    assert by_label["first-batch logits"]["deviation"] < 1e-5
    assert by_label["first 10 losses"]["deviation"] < 1e-4


def test_fp32_samples_agree_across_frameworks(fp32_run):
    # Greedy decoding after 200 float32 steps: a near-tie argmax may flip late in one cell (XLA's
    # fusions round differently), so the first bytes agree everywhere and most cells entirely.
    samples = [c["metrics"]["sample"] for c in fp32_run["cells"]]
    assert len({s[: len("The ") + 6] for s in samples}) == 1, samples
    most = max(set(samples), key=samples.count)
    assert samples.count(most) >= len(samples) - 1, samples


def test_bf16_cells_run_and_pass_their_looser_tolerance(bf16_run):
    for framework, mode in MATRIX:
        cell = _cell(bf16_run, framework, mode)
        assert cell["precision"] == "bf16" and cell["metrics"]["precision"] == "bf16"
        assert cell["id"].endswith("-bf16")
    probe = bf16_run["parity"]["gpt"]["probe"]
    assert probe["precision"] == "bf16" and probe["tolerances"] == spec.TOLERANCES["bf16"]
    assert probe["verdict"] == "PASS", probe["summary"]
    # bf16 is not float32: the logits differ by more than the fp32 tolerance somewhere.
    logits = {c["label"]: c for c in probe["checks"]}["first-batch logits"]
    assert logits["deviation"] > spec.TOLERANCES["fp32"]["logits"]


def test_a_diverging_learning_rate_fails_parity(tmp_path_factory):
    results = _run(tmp_path_factory, "gpt-nan", {**TINY, "steps": 4, "lr": 1e6},
                   frameworks=["torch", "jax"], modes=["eager", "jit"])
    probe = results["parity"]["gpt"]["probe"]
    assert probe["passed"] is False and probe["verdict"] == "FAIL"
    assert any(f["kind"] == "non-finite" for f in probe["failures"]), probe["failures"]
    for cell in results["cells"]:
        assert cell["metrics"]["diverged"] is True and cell["metrics"]["val_loss"] is None
        assert cell["metrics"]["sample"] is None and cell["metrics"]["below_unigram"] is None


def test_parity_with_one_cell_is_not_compared(tmp_path):
    probe_file = tmp_path / "parity_probe.npz"
    np.savez(probe_file, logits=np.zeros((1, 2, 256)), **{"grad:transformer.wte.weight": np.ones((256, 2))})
    cell = {"framework": "torch", "mode": "eager", "status": "ok", "metrics": {"precision": "fp32"},
            "series": {"train_loss": [5.5, 5.4]}, "artifacts": {"parity_probe": str(probe_file)}}
    failed = {"framework": "jax", "mode": "jit", "status": "failed", "error": "boom"}
    probe = spec.parity([cell, failed], spec.GptParams())["probe"]
    assert probe["passed"] is None and probe["verdict"] == "not compared"


def test_a_task_without_bf16_skips_its_cells():
    exp = build_experiment({"tasks": ["exponent", "gpt"], "frameworks": ["torch"], "precision": "bf16"})
    reasons = {c.task: skip_reason(c) for c in expand(exp)}
    assert "does not support --precision bf16" in reasons["exponent"]
    assert reasons["gpt"] is None


@pytest.mark.parametrize("content", [None, b"too short"], ids=["missing", "short"])
def test_bad_data_file_exits_2_with_one_line(tmp_path, content):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    result = run_cli("run", "gpt", "--set", f"data={path}", "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "data=" in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_user_text_file_is_trained_on(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"abc" * 200)
    data = spec.build_data(spec.GptParams(**TINY, data=str(path)), 0)
    assert set(np.unique(data["train_tokens"])) == set(b"abc")
    spec.prepare(spec.GptParams(**TINY, data=str(path)))  # long enough: no error


def test_keras_cells_are_in_the_matrix_and_every_keras_mode_is_declared():
    assert ("keras", "tensorflow") in MATRIX and ("keras", "jax-jit") in MATRIX
    from spotdiff.tasks import get_spec

    declared = get_spec("gpt").modes["keras"]
    assert set(declared) == {"jax", "jax-jit", "tensorflow", "tensorflow-jit", "torch", "torch-jit"}


def test_explicit_settings_override_native_defaults():
    native = spec.GptParams(hparams="native")
    assert native.layer_hparams() == {"gelu": None, "ln_eps": None}
    assert "eps" not in native.optimizer_hparams()
    chosen, honoured = spec.where_params(native, {"gelu": "exact", "layernorm_eps": 1e-5, "batchnorm_eps": 1})
    assert honoured == ["gelu", "layernorm_eps"]
    assert chosen.layer_hparams() == {"gelu": "exact", "ln_eps": 1e-5}
    assert spec.GptParams(adam_eps=1e-6).optimizer_hparams()["eps"] == 1e-6


def _where(tmp_path_factory, name: str, *args: str) -> dict:
    out = tmp_path_factory.mktemp(name)
    sets = [a for item in WHERE_TINY for a in ("--set", item)]
    result = run_cli("where", "gpt", *args, *sets, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((out / "where.json").read_text())
    document["stdout"] = result.stdout
    return document


def test_where_aligned_finds_no_divergence_keras_epsilon_included(tmp_path_factory):
    # Keras (TensorFlow backend: the one where Keras computes float64) against PyTorch, aligned:
    # the AdamW epsilon sits at sqrt(v_hat) in both, so even the updates agree within the floor.
    found = _where(tmp_path_factory, "where-aligned", "--frameworks", "torch,keras",
                   "--modes", "eager,tensorflow", "--hparams", "aligned")
    base = found["base"]
    assert base["status"] == "no divergence", found["summary"]
    assert 0 < base["max_ratio"] < found["threshold"] and found["cause"] is None
    rows = base["pairs"]["torch|keras"]["rows"]
    keys = {r["key"] for r in rows}
    assert {"0/forward/transformer.h.0.mlp.gelu", "2/loss", "2/grad/transformer.wte.weight",
            "2/param/transformer.h.0.attn.c_attn.weight", "0/forward/lm_head"} <= keys
    assert all(r["ratio"] is not None for r in rows)
    assert "no divergence" in found["stdout"]


def test_where_native_names_layernorm_epsilon_then_gelu(tmp_path_factory):
    found = _where(tmp_path_factory, "where-native", "--frameworks", "torch,jax", "--hparams", "native",
                   "--steps", "2")
    first = found["base"]["first"]["row"]
    assert (first["step"], first["phase"], first["name"]) == (0, "forward", "transformer.h.0.ln_1")
    chain = found["chain"]
    assert [c["key"] for c in chain] == ["layernorm_eps", "gelu"], found["summary"]
    assert [c["outcome"] for c in chain] == ["partly", "confirmed"]
    assert chain[1]["with"] == ["layernorm_eps"] and chain[1]["aligned_by"] == ["jax", "torch"]
    assert chain[1]["max_ratio_after"] <= found["threshold"] < chain[1]["max_ratio_before"]
    assert "LayerNorm epsilon and GELU approximation" in found["summary"]


def test_where_layers_and_batches_are_the_neutral_record_plan():
    params = spec.GptParams(**TINY)
    layers = spec.where_layers(params)
    assert layers[0] == ("transformer.embed", "embedding") and layers[-1] == ("lm_head", "dense")
    assert len(layers) == 1 + 7 * TINY["n_layer"] + 2
    assert ("transformer.h.0.mlp.gelu", "gelu") in layers and ("transformer.h.0.ln_1", "layernorm") in layers
    data = spec.build_data(params, 0)
    (x, y), _ = spec.where_batches(data, params, 2)
    np.testing.assert_array_equal(x, spec.batch(data["train_tokens"], data["train_offsets"][0], 16)[0])
    with pytest.raises(ValueError, match="raise --set steps"):
        spec.where_batches(data, params, TINY["steps"] + 1)
