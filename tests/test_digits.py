"""The digit CNN in every framework x mode, run for real; weight layouts against numpy oracles."""

from __future__ import annotations

import numpy as np
import pytest

from spotdiff.backends import layouts
from spotdiff.experiment import build_experiment, expand
from spotdiff.orchestrate import run_experiment
from spotdiff.tasks.digits import models
from spotdiff.tasks.digits.spec import CURVE_TOL, PROBE_TOL, DigitsParams

SMALL = {"limit_train": 192, "limit_test": 60, "epochs": 2, "batch_size": 32}
NATIVE = ["torch", "tensorflow", "jax"]  # Keras on every backend: tests/test_keras.py
MATRIX = [(c.framework, c.mode)
          for c in expand(build_experiment({"tasks": ["digits"], "frameworks": NATIVE}))]
NAMES = ("test_accuracy", "test_loss", "steady_images_per_s", "first_epoch_s", "epoch_s", "peak_rss_mb",
         "param_count", "gflops_per_s", "peak_fraction")


@pytest.fixture(scope="module")
def digits_run_dir(tmp_path_factory):
    exp = build_experiment({"tasks": ["digits"], "frameworks": NATIVE, "threads": 1, "device": "cpu",
                            "overrides": SMALL})
    return run_experiment(exp, tmp_path_factory.mktemp("digits"), render=False, index=False)


@pytest.fixture(scope="module")
def digits_run(digits_run_dir):
    return digits_run_dir[0]


@pytest.mark.parametrize("framework,mode", MATRIX, ids=["-".join(m) for m in MATRIX])
def test_cell_trains_and_reports_the_promised_metrics(digits_run, framework, mode):
    (cell,) = [c for c in digits_run["cells"] if (c["framework"], c["mode"]) == (framework, mode)]
    assert cell["status"] == "ok", (cell["error"], cell["stderr_tail"])
    m = cell["metrics"]
    for name in NAMES:
        assert m.get(name) is not None, name
    assert m["param_count"] == models.PARAM_COUNTS["pytorch-examples"] and m["param_count_ok"]
    assert len(cell["series"]["train_loss"]) == 2 * 6 and len(cell["series"]["test_accuracy"]) == 2
    assert 0 <= m["test_accuracy"] <= 1 and m["steady_images_per_s"] > 0
    assert np.all(np.isfinite(cell["series"]["train_loss"]))
    assert len(cell["series"]["misclassified_index"]) == len(cell["series"]["misclassified_pred"])


def test_parity_probe_agrees_across_every_pair(digits_run):
    """spotdiff.parity.compare over every cell: PASS, and per check the worst deviation over all pairs
    within that check's tolerance (README: logits and gradients within 1e-4, first-epoch loss 1e-3)."""
    probe = digits_run["parity"]["digits"]["probe"]
    labels = {f"{framework}-{mode}" for framework, mode in MATRIX}
    assert probe["verdict"] == "PASS" and probe["passed"] is True and not probe["failures"]
    assert probe["cells"] == len(MATRIX) and set(probe["compared"]) == labels
    assert not probe["not_compared"] and probe["failed_cells"] == 0
    assert probe["probe_tol"] == PROBE_TOL and probe["curve_tol"] == CURVE_TOL
    checks = {c["key"]: c for c in probe["checks"]}
    assert set(checks) == {"logits", "grad", "curve"}
    for key, check in checks.items():
        assert check["passed"] is True, key
        assert len(set(check["pair"])) == 2 and set(check["pair"]) <= labels, key
        assert 0 <= check["deviation"] <= check["tol"] and check["ratio"] <= 1, (key, check["deviation"])
    assert checks["logits"]["tol"] == PROBE_TOL and checks["curve"]["tol"] == CURVE_TOL  # absolute
    # Gradients: atol 1e-7 + PROBE_TOL x the gradient's largest |value|, so it grows with the gradient.
    grad = checks["grad"]
    assert grad["relative_to"] == "magnitude" and grad["rtol"] == PROBE_TOL
    assert grad["atol"] < grad["tol"] and grad["deviation"] <= PROBE_TOL


def test_flops_and_parameter_counts_follow_the_architecture():
    for model in models.MODELS:
        assert models.param_count(model) == models.PARAM_COUNTS[model]
    macs = 25 * 10 * 24 * 24 + 10 * 25 * 20 * 8 * 8 + 320 * 50 + 50 * 10
    assert models.forward_flops_per_image("pytorch-examples") == 2 * macs


def _conv_nchw(x, w):  # x (C, H, W), w (O, C, k, k): valid cross-correlation, the numpy oracle
    o, c, k, _ = w.shape
    out = np.zeros((o, x.shape[1] - k + 1, x.shape[2] - k + 1))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = np.tensordot(w, x[:, i:i + k, j:j + k], axes=([1, 2, 3], [0, 1, 2]))
    return out


def _conv_nhwc(x, w):  # x (H, W, C), w (k, k, C, O)
    k = w.shape[0]
    out = np.zeros((x.shape[0] - k + 1, x.shape[1] - k + 1, w.shape[3]))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.tensordot(x[i:i + k, j:j + k], w, axes=([0, 1, 2], [0, 1, 2]))
    return out


def test_conv_kernel_conversion_computes_the_same_convolution():
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(3, 7, 7)), rng.normal(size=(4, 3, 3, 3))
    expected = _conv_nchw(x, w)  # (O, H, W)
    got = _conv_nhwc(x.transpose(1, 2, 0), layouts.conv_oihw_to_hwio(w))  # (H, W, O)
    np.testing.assert_allclose(got.transpose(2, 0, 1), expected, rtol=1e-12)
    np.testing.assert_array_equal(layouts.conv_hwio_to_oihw(layouts.conv_oihw_to_hwio(w)), w)


def test_first_dense_layer_is_permuted_for_the_channels_last_flatten():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(20, 4, 4))  # (C, H, W) after the last convolution
    kernel = rng.normal(size=(50, 320))  # neutral (out, in) over the (C, H, W) flatten
    expected = kernel @ features.reshape(-1)
    channels_last = layouts.dense_to_in_out(kernel, (20, 4, 4))  # (in, out) over (H, W, C)
    np.testing.assert_allclose(features.transpose(1, 2, 0).reshape(-1) @ channels_last, expected, rtol=1e-12)
    np.testing.assert_array_equal(layouts.dense_from_in_out(channels_last, (20, 4, 4)), kernel)
    np.testing.assert_array_equal(layouts.dense_to_in_out(kernel), kernel.T)


def test_shared_weights_are_seeded_and_shaped():
    a, b = models.shared_weights("tf-layers", 0), models.shared_weights("tf-layers", 0)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["conv1.weight"].shape == (32, 1, 5, 5) and a["fc1.weight"].shape == (1024, 3136)
    assert a["fc1.weight"].dtype == np.float32


# TensorBoard: every digits cell's run carries the same content, read back with TensorBoard's reader.
NEUTRAL_NAMES = [f"{layer}.{kind}" for layer in ("conv1", "conv2", "fc1", "fc2")
                 for kind in ("weight", "bias")]
STEPS_PER_EPOCH = 6  # 192 images / 32


def _board(run_dir, framework, mode):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "tensorboard" / "digits" / f"{framework}-{mode}"),
                                   size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


@pytest.mark.parametrize("framework,mode", MATRIX, ids=["-".join(m) for m in MATRIX])
def test_tensorboard_curves_images_histograms_graph_and_projector(digits_run_dir, framework, mode):
    results, run_dir = digits_run_dir
    (cell,) = [c for c in results["cells"] if (c["framework"], c["mode"]) == (framework, mode)]
    board = _board(run_dir, framework, mode)
    loss = board.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, 13))
    np.testing.assert_allclose([e.value for e in loss], cell["series"]["train_loss"], rtol=1e-6)
    accuracy = board.Scalars("test/accuracy")
    assert [e.step for e in accuracy] == [6, 12]
    np.testing.assert_allclose([e.value for e in accuracy], cell["series"]["test_accuracy"], rtol=1e-6)
    assert {"test/loss", "time/epoch_s", "train/learning_rate"} <= set(board.Tags()["scalars"])
    assert [e.value for e in board.Scalars("train/learning_rate")] == pytest.approx([DigitsParams().lr] * 2)
    images = board.Tags()["images"]
    assert {"inputs/train_samples", "filters/conv1"} <= set(images)
    assert ("test/misclassified" in images) == bool(cell["series"]["misclassified_index"])
    for name in NEUTRAL_NAMES:
        for kind in ("parameters", "gradients"):
            steps = [e.step for e in board.Histograms(f"{kind}/{name}")]
            assert steps == [0, STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH], (kind, name)  # in order
    assert board.Graph().node  # the Graphs dashboard has something to draw
    cell_board = run_dir / "tensorboard" / "digits" / f"{framework}-{mode}"
    config = (cell_board / "projector_config.pbtxt").read_text()
    tensors_path = next(cell_board.rglob("tensors.tsv"))
    rows = tensors_path.read_text().strip().splitlines()
    assert len(rows) == SMALL["limit_test"] and len(rows[0].split("\t")) == 50  # fc1 features
    assert "sprite" in config and "metadata_path" in config


def test_gradient_histograms_at_init_agree_across_frameworks(digits_run_dir):
    """Shared init, the same probe batch, dropout off: the step-0 gradients are the same numbers."""
    _, run_dir = digits_run_dir
    sums = {}
    for framework, mode in MATRIX:
        board = _board(run_dir, framework, mode)
        sums[(framework, mode)] = [board.Histograms(f"gradients/{n}")[0].histogram_value.sum
                                   for n in NEUTRAL_NAMES]
    reference = next(iter(sums.values()))
    for key, values in sums.items():
        np.testing.assert_allclose(values, reference, atol=1e-5, err_msg=str(key))


# Input pipeline vs step time, compute-only images/s, and the parity probe after training.


@pytest.mark.parametrize("framework,mode", MATRIX, ids=["-".join(m) for m in MATRIX])
def test_input_and_step_time_add_up_to_the_epoch(digits_run, framework, mode):
    (cell,) = [c for c in digits_run["cells"] if (c["framework"], c["mode"]) == (framework, mode)]
    series, m = cell["series"], cell["metrics"]
    for epoch_s, input_s, step_s in zip(series["epoch_s"], series["input_s"], series["step_s"], strict=True):
        assert input_s >= 0 and step_s > 0
        assert input_s + step_s == pytest.approx(epoch_s, rel=0.15, abs=0.02)
    assert m["compute_images_per_s"] >= m["steady_images_per_s"] > 0
    assert 0 <= m["input_fraction"] < 1
    assert m["step_s"] == pytest.approx(series["step_s"][1])  # two epochs: the second is the steady one
    assert m["input_s"] == pytest.approx(series["input_s"][1])


def _forward_numpy(weights, images):  # pytorch-examples net, dropout off: (B, 28, 28) -> (B, 10)
    def conv(x, w, b):  # x (B, C, H, W), w (O, C, k, k): valid cross-correlation
        k = w.shape[2]
        out = np.empty((x.shape[0], w.shape[0], x.shape[2] - k + 1, x.shape[3] - k + 1))
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                out[:, :, i, j] = np.tensordot(x[:, :, i:i + k, j:j + k], w, axes=([1, 2, 3], [1, 2, 3]))
        return out + b[None, :, None, None]

    def pool_relu(x):  # 2x2 max pool, then relu
        b, c, h, w = x.shape
        return np.maximum(x.reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5)), 0)

    w = {k: v.astype(np.float64) for k, v in weights.items()}
    x = pool_relu(conv(images[:, None].astype(np.float64), w["conv1.weight"], w["conv1.bias"]))
    x = pool_relu(conv(x, w["conv2.weight"], w["conv2.bias"])).reshape(len(images), -1)  # (B, 320) C,H,W
    x = np.maximum(x @ w["fc1.weight"].T + w["fc1.bias"], 0)
    return x @ w["fc2.weight"].T + w["fc2.bias"]


@pytest.mark.parametrize("framework,mode", MATRIX, ids=["-".join(m) for m in MATRIX])
def test_parity_probe_is_a_forward_pass_of_the_shared_initial_weights(digits_run, framework, mode):
    from spotdiff.tasks.digits import common
    from spotdiff.tasks.digits.spec import build_data, neutral_weights

    (cell,) = [c for c in digits_run["cells"] if (c["framework"], c["mode"]) == (framework, mode)]
    params = DigitsParams(**SMALL)
    data = build_data(params, cell["seed"])
    images, _ = common.probe_batch(data, params.batch_size)
    expected = _forward_numpy(neutral_weights(data), images)
    probe = np.load(cell["artifacts"]["parity_probe"])
    np.testing.assert_allclose(probe["logits"], expected, atol=PROBE_TOL)


PROBE_ORDER_SCRIPT = r"""
import json, sys, types
from pathlib import Path
from spotdiff.backends.torch import env
from spotdiff.tasks.digits import spec, torch_impl

env.configure(1, 0, "cpu")
params = spec.DigitsParams(limit_train=64, limit_test=20, epochs=1, batch_size=32,
                           parity_probe=sys.argv[2] == "on")
data = spec.build_data(params, 0)
calls = []
for name in ("parity_probe", "train_epoch"):
    original = getattr(torch_impl, name)
    def wrapped(*args, _original=original, _name=name, **kwargs):
        calls.append(_name)
        return _original(*args, **kwargs)
    setattr(torch_impl, name, wrapped)
cell = types.SimpleNamespace(seed=0, mode="eager", tensorboard_dir=None)
metrics, series, _ = torch_impl.run(cell, params, data, Path(sys.argv[1]))
print(json.dumps({"calls": calls, "train_loss": series["train_loss"]}))
"""


def test_parity_probe_runs_after_training_and_leaves_training_unchanged(tmp_path):
    """The docs say the probe runs after training (the first epoch stays cold), from the shared
    weights; training (dropout on, seeded) must produce the same losses with the probe as without it."""
    import json
    import subprocess
    import sys

    runs = {}
    for probe in ("on", "off"):
        out = subprocess.run([sys.executable, "-c", PROBE_ORDER_SCRIPT, str(tmp_path), probe], check=True,
                             capture_output=True, text=True)
        runs[probe] = json.loads(out.stdout.strip().splitlines()[-1])
    assert runs["on"]["calls"] == ["train_epoch", "parity_probe", "train_epoch"]  # training's, the probe's
    assert runs["off"]["calls"] == ["train_epoch"]
    assert runs["on"]["train_loss"] == runs["off"]["train_loss"]


# The accuracy the README and docs/tasks.md promise: every framework passes 0.90 at the defaults.
PROMISED_ACCURACY = 0.90


@pytest.fixture(scope="module")
def default_size_run(digits_default_run):
    """conftest: the serving tests export and serve these trained models."""
    return digits_default_run[0]


def test_every_framework_reaches_the_promised_accuracy_at_the_defaults(default_size_run):
    cells = {(c["framework"], c["mode"]): c for c in default_size_run["cells"]}
    assert {("torch", "eager"), ("tensorflow", "fit"), ("jax", "jit")} <= set(cells)  # and tensorflow-eager
    for key, cell in cells.items():
        assert cell["status"] == "ok", (key, cell["error"])
        assert cell["metrics"]["test_accuracy"] >= PROMISED_ACCURACY, (key, cell["metrics"]["test_accuracy"])
