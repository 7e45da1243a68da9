"""`--set` overrides become task parameters through one function, with one error line everywhere."""

from __future__ import annotations

import pytest

from spotdiff.errors import UserError
from spotdiff.experiment import build_experiment
from spotdiff.overrides import params_for, task_params
from spotdiff.report import plots
from spotdiff.tasks import get_spec


def test_overrides_apply_to_the_tasks_that_have_the_field():
    assert task_params("exponent", {"steps": "7", "not_a_field": 1}).steps == 7


def test_an_invalid_override_reads_the_same_from_the_parent_and_from_the_spec():
    with pytest.raises(UserError) as from_the_cli:
        build_experiment({"tasks": ["exponent"], "overrides": {"lr": "fast"}})
    with pytest.raises(UserError) as from_the_spec:
        params_for(get_spec("exponent"), {"lr": "fast"})
    assert str(from_the_cli.value) == str(from_the_spec.value)
    assert str(from_the_spec.value).startswith("bad --set value for task exponent: lr: ")
    assert "\n" not in str(from_the_spec.value)


def test_the_report_keeps_the_default_under_a_bad_override():
    results = {"experiment": {"overrides": {"true_phi": "three"}}}
    assert plots.reference_value(results, "exponent", "phi") == get_spec("exponent").params().true_phi
