"""The Python API: spotdiff.run returns Results; bad input raises UserError like the CLI."""

from __future__ import annotations

import pytest

import spotdiff
from spotdiff.errors import UserError


def test_run_returns_results_with_cells_frame_plot_and_report(tmp_path):
    results = spotdiff.run("exponent", frameworks="jax", modes=["jit"], variants="manual",
                           steps=60, repeats=1, threads=1, out=tmp_path / "run", report=False)
    assert [c["status"] for c in results.cells] == ["ok"]
    frame = results.to_pandas()
    assert list(frame["framework"]) == ["jax"] and frame["steady_step_us"].iloc[0] > 0
    assert results.plot("steady_step_us").axes
    page = results.report(tmp_path / "copy" / "report.html")
    assert page.exists() and "<svg" in page.read_text()
    assert "jax" in results._repr_html_() and "ok" in repr(results)
    again = spotdiff.Results.load(tmp_path / "run")
    assert again.cells[0]["metrics"]["final_phi"] == results.cells[0]["metrics"]["final_phi"]


def test_bad_options_raise_user_errors():
    with pytest.raises(UserError, match="unknown framework"):
        spotdiff.run("exponent", frameworks="caffe")
    with pytest.raises(UserError, match="unknown --set key 'stepz'"):
        spotdiff.run("exponent", stepz=3)


def test_plot_of_a_missing_metric(tmp_path):
    results = spotdiff.Results({"run_id": "x", "cells": []}, tmp_path)
    with pytest.raises(ValueError, match="no ok cell"):
        results.plot("steady_step_us")

