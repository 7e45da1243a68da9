"""Experiment validation and expansion into cells (parent side, no framework import)."""

from __future__ import annotations

import pytest

from spotdiff.errors import UserError
from spotdiff.experiment import build_experiment, expand, load_toml, parse_set
from spotdiff.tasks import task_names


def test_all_covers_every_task_framework_mode_and_variant():
    # `spotdiff run --all`; a plain `spotdiff run` is the default run (tests/test_default_run.py).
    cells = expand(build_experiment({"selection": "all"}))
    assert {c.task for c in cells} == set(task_names()) >= {"exponent", "digits", "sequences", "trees"}
    cells = [c for c in cells if c.task == "exponent"]
    keras = {("keras", f"{backend}{jit}") for backend in ("jax", "tensorflow", "torch")
             for jit in ("", "-jit")}
    assert len(cells) == (9 + len(keras)) * 2
    assert {(c.framework, c.mode) for c in cells} == {
        ("torch", "eager"), ("torch", "compile"),
        ("tensorflow", "eager"), ("tensorflow", "graph"), ("tensorflow", "xla"), ("tensorflow", "session"),
        ("jax", "eager"), ("jax", "jit"), ("jax", "fused"),
    } | keras
    assert len({c.id for c in cells}) == len(cells)


def test_aliases_and_filters():
    exp = build_experiment(
        {"tasks": ["exponent"], "frameworks": ["pytorch", "tf"], "modes": ["eager"], "variants": ["manual"]}
    )
    assert exp.frameworks == ["torch", "tensorflow"]
    cells = expand(exp)
    assert [(c.framework, c.mode, c.variant) for c in cells] == [
        ("torch", "eager", "manual"),
        ("tensorflow", "eager", "manual"),
    ]


def test_overrides_are_typed_by_the_task():
    exp = build_experiment(
        {"tasks": ["exponent"], "overrides": parse_set(["steps=10", "optimizer=adam", "lr=0.5"])}
    )
    params = expand(exp)[0].params
    assert params["steps"] == 10 and params["optimizer"] == "adam" and params["lr"] == 0.5


def test_a_mode_that_no_selected_framework_has():
    with pytest.raises(UserError, match="unknown mode 'session' for jax"):
        build_experiment({"frameworks": ["jax"], "modes": ["session"]})


def test_toml_round_trip(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('tasks = ["exponent"]\nframeworks = ["jax"]\nrepeats = 1\nout = "x"\n[set]\nsteps = 7\n')
    data = load_toml(path)
    assert data["overrides"] == {"steps": 7} and data["out"] == "x"
    data.pop("out")
    cells = expand(build_experiment(data))
    assert {c.framework for c in cells} == {"jax"} and cells[0].params["steps"] == 7
