"""`require(module)`: an optional dependency that is missing skips its tests locally and fails them in CI."""

from __future__ import annotations

import pytest
from _pytest.outcomes import Failed, Skipped
from conftest import require

MISSING = "spotdiff_no_such_module_4711"


def test_a_present_module_is_returned():
    import json

    assert require("json") is json


def test_a_missing_module_skips_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(Skipped, match=MISSING):
        require(MISSING)


@pytest.mark.parametrize("value", ["false", "", "1"])
def test_only_ci_true_turns_the_skip_into_a_failure(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(Skipped):
        require(MISSING)


def test_a_missing_module_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Failed, match=f"{MISSING} is required under CI=true"):
        require(MISSING)
