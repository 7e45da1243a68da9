"""`spotdiff where` with Keras 3 as one of the frameworks, on the backend its mode names.

Real runs at the smallest sizes (module fixtures), one per Keras backend: Keras' own RMSprop (on
TensorFlow) and Adam (on JAX) named as causes (torch the odd one out for RMSprop, keras for Adam's
epsilon-hat, aligned by a written-out update in torch and JAX), and the digits CNN on
Keras-on-PyTorch with no divergence, the case where Keras' type promotion used to compute a float64
run's dense layers in float32.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

TINY_DIGITS = ("--steps", "1", "--set", "batch_size=4", "--set", "limit_train=8", "--set", "epochs=1")


def _where(tmp_path_factory, name: str, *args: str) -> dict:
    out = tmp_path_factory.mktemp(name)
    result = run_cli("where", *args, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return {**json.loads((out / "where.json").read_text()), "stdout": result.stdout}


@pytest.fixture(scope="module")
def keras_rmsprop(tmp_path_factory) -> dict:
    return _where(tmp_path_factory, "keras-rmsprop", "exponent", "--frameworks", "torch,jax,keras",
                  "--modes", "eager,tensorflow", "--set", "optimizer=rmsprop", "--steps", "2")


@pytest.fixture(scope="module")
def keras_adam(tmp_path_factory) -> dict:
    # Keras on JAX: on TensorFlow, Keras casts Adam's Python-float betas through float32 even in the
    # float64 run (ops.cast), a second, smaller difference that leaves the alignment "partly".
    return _where(tmp_path_factory, "keras-adam", "exponent", "--frameworks", "torch,jax,keras",
                  "--modes", "eager,jax", "--set", "optimizer=adam", "--steps", "2")


@pytest.fixture(scope="module")
def keras_digits(tmp_path_factory) -> dict:
    return _where(tmp_path_factory, "keras-digits", "digits", "--frameworks", "torch,keras",
                  "--modes", "eager,torch", *TINY_DIGITS)


def test_keras_rmsprop_agrees_with_optax_and_torch_is_the_odd_one_out(keras_rmsprop):
    base = keras_rmsprop["base"]
    assert keras_rmsprop["modes"]["keras"] == "tensorflow"
    assert keras_rmsprop["versions"]["keras"]["keras_backend"] == "tensorflow"
    assert base["failures"] == {} and base["status"] == "diverges"
    assert (base["first"]["row"]["step"], base["first"]["row"]["phase"]) == (0, "update")
    assert base["pairs"]["jax|keras"]["status"] == "no divergence"
    assert base["pairs"]["torch|keras"]["status"] == "diverges"
    assert base["odd_one_out"] == "torch"
    assert "torch is the odd one out: it differs from jax and keras" in keras_rmsprop["stdout"]


def test_keras_rmsprop_eps_inside_the_root_is_the_confirmed_cause(keras_rmsprop):
    cause = keras_rmsprop["cause"]
    assert cause["key"] == "rmsprop_eps" and cause["outcome"] == "confirmed"
    assert {"torch", "keras"} <= set(cause["aligned_by"])  # keras: its own RMSprop already is that
    assert cause["max_ratio_after"] <= keras_rmsprop["threshold"] < cause["max_ratio_before"]


def test_keras_adam_epsilon_hat_makes_keras_the_odd_one_out_and_is_confirmed(keras_adam):
    base, cause = keras_adam["base"], keras_adam["cause"]
    assert keras_adam["versions"]["keras"]["keras_backend"] == "jax"
    assert base["status"] == "diverges" and base["odd_one_out"] == "keras"
    assert base["first"]["row"]["phase"] == "update" and base["first"]["row"]["step"] == 0
    assert base["pairs"]["torch|jax"]["status"] == "no divergence"
    assert cause["key"] == "adam_eps" and cause["outcome"] == "confirmed"
    assert {"torch", "jax", "keras"} <= set(cause["aligned_by"])  # torch and jax write the update out
    assert cause["max_ratio_after"] <= keras_adam["threshold"] < cause["max_ratio_before"]
    assert "Adam epsilon-hat" in keras_adam["stdout"]


def test_keras_on_torch_digits_finds_no_divergence_in_true_float64(keras_digits):
    from spotdiff.tasks.digits.models import WHERE_LAYERS

    base = keras_digits["base"]
    assert keras_digits["versions"]["keras"]["keras_backend"] == "torch"
    assert base["failures"] == {}, base["failures"]  # a float64 run recorded narrower fails in the child
    assert base["status"] == "no divergence", keras_digits["summary"]
    # Same maths in float64: ratios ~1e-9. Keras' promotion (float64 -> float32 off TensorFlow) left
    # in place made the dense layers float32 inside the float64 run: 0.37 at relu3.
    assert base["max_ratio"] is not None and base["max_ratio"] < 1e-3
    forward = [key.split("/")[2] for key in base["order"] if key.startswith("0/forward/")]
    assert forward == [name for name, _ in WHERE_LAYERS["pytorch-examples"]]
    assert "0/grad/fc1.weight" in base["order"] and "0/param/conv1.weight" in base["order"]


def test_keras_twice_is_one_framework_not_a_comparison():
    result = run_cli("where", "exponent", "--frameworks", "keras,keras", "--modes", "jax,torch")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "at least two" in lines[0]
