"""report.html and the plots, from a hand-made results dict (no framework is imported)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from spotdiff.report import html, plots

SAMPLE = Path(__file__).resolve().parents[1] / "runs" / "sample" / "results.json"


def cell(framework, mode, variant, steady=None, spread=None, status="ok", task="exponent", **metrics):
    """One results.json cell; ok cells get a short phi/loss trajectory unless `series` is given."""
    series = metrics.pop("series", None)
    if status == "ok" and series is None:
        phis = [3.0 - 2.0 * 0.99**step for step in range(1200)]  # longer than plots.MAX_POINTS
        series = {"phi": phis, "loss": [(3.0 - p) ** 2 / 10 for p in phis]}
    if steady is not None:
        metrics["steady_step_us"] = steady
        low, high = spread or (steady, steady)
        metrics["steady_step_us_min"], metrics["steady_step_us_max"] = low, high
    return {
        "id": f"{task}-{framework}-{mode}-{variant}-s0", "task": task, "framework": framework, "mode": mode,
        "variant": variant, "seed": 0, "status": status, "error": metrics.pop("error", None),
        "stderr_tail": metrics.pop("stderr_tail", None), "environment": {},
        "metrics": metrics if status == "ok" else {}, "series": series or {},
    }


def make_results() -> dict:
    common = {"first_step_s": 0.5, "compile_s": 0.4, "final_phi": 2.999987,
              "phi_error": 1.3e-5, "steps_to_converge": 341, "final_loss": 1e-12}
    cells = [
        cell("torch", "eager", "manual", 120.0, (119.0, 121.0), peak_rss_mb=240.0, import_s=1.0, **common),
        cell("tensorflow", "graph", "manual", 220.0, (210.0, 230.0), peak_rss_mb=760.0, import_s=3.0,
             **common),
        cell("tensorflow", "xla", "manual", status="failed", error="XLA compile failed: <boom> & more",
             stderr_tail="Traceback (most recent call last):\n  <script>alert(1)</script>"),
        cell("jax", "eager", "manual", status="skipped", error="jax is not installed"),
        # jax-jit imports 12% faster than jax-fused: noise between modes, not a difference
        cell("jax", "jit", "manual", 16.0, (15.0, 17.0), peak_rss_mb=250.0, import_s=0.40, **common),
        cell("jax", "fused", "manual", 5.0, (4.9, 5.1), peak_rss_mb=255.0, import_s=0.45, **common),
        cell("torch", "eager", "optimizer", 180.0, (170.0, 190.0), peak_rss_mb=240.0, import_s=1.0, **common),
        cell("jax", "jit", "optimizer", 5.5, (5.2, 5.8), peak_rss_mb=300.0, import_s=0.4, **common),
        cell("jax", "fused", "optimizer", 5.0, (4.8, 6.0), peak_rss_mb=310.0, import_s=0.45, **common),
        # ok, but nothing recorded: null metrics and no series
        cell("torch", "compile", "optimizer", series={}, steady_step_us=None, first_step_s=None),
        # a task this version does not know still renders
        cell("mystery", "eager", "only", 50.0, task="mystery", first_step_s=0.1,
             series={"accuracy": [0.1, 0.5, 0.9]}),
    ]
    parity_manual = {"cells": 4, "max_trajectory_dev": 2.4e-7, "max_final_dev": 0.0,
                     "trajectory_pair": ["torch-eager", "jax-jit"],
                     "final_pair": ["torch-eager", "jax-fused"],
                     "trajectory_tol": 1e-3, "final_tol": 1e-4, "passed": True}
    parity_optimizer = {**parity_manual, "max_trajectory_dev": 0.02, "passed": False,
                        "trajectory_pair": ["jax-jit", "jax-fused"]}
    return {
        "schema": 1, "run_id": "test-run-42", "status": "complete",
        "environment": {"python": "3.11.7", "cpu_model": "Test CPU 9000", "cpu_cores": 8, "threads": 2,
                        "device": "cpu", "dtype": "float32", "started_at": "2026-01-02T03:04:05+0000",
                        "frameworks": {"torch": "2.13.0", "tensorflow": "2.21.0", "jax": "0.10.2"},
                        "flags": {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}},
        "experiment": {"tasks": ["exponent", "mystery"], "seed": 0, "repeats": 3, "overrides": {}},
        "cells": cells,
        "parity": {"exponent": {"manual": parity_manual, "optimizer": parity_optimizer}},
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[dict, Path, str]:
    results = make_results()
    run_dir = tmp_path_factory.mktemp("run")
    path = html.render_report(results, run_dir)
    assert path == run_dir / "report.html"
    return results, run_dir, path.read_text(encoding="utf-8")


def test_page_is_self_contained(rendered):
    _, _, page = rendered
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page.lower().replace("&lt;script", "")
    assert "<link" not in page.lower()
    assert "<svg" in page and "<style>" in page


def test_header_shows_run_and_environment(rendered):
    _, _, page = rendered
    for text in ("test-run-42", "Test CPU 9000", "float32", "torch 2.13.0", "jax 0.10.2", "XLA_FLAGS"):
        assert text in page


def test_parity_verdicts_and_figures(rendered):
    _, _, page = rendered
    parity = page[page.index('id="parity"'):page.index('id="task-exponent"')]
    assert "PASS" in parity and "FAIL" in parity
    assert "torch-eager vs jax-jit" in parity and "2.40e-07" in parity and "0.001" in parity


def test_every_cell_has_a_row_and_failures_show_why(rendered):
    results, _, page = rendered
    for c in results["cells"]:
        row = (rf'<tr class="{c["status"]}">\s*<td><span class="dot {c["framework"]}"></span>{c["framework"]}'
               rf'</td>\s*<td( title="[^"]*")?>{c["mode"]}</td><td>{c["variant"]}</td>')
        assert re.search(row, page), c["id"]
    assert "XLA compile failed: &lt;boom&gt; &amp; more" in page
    assert "jax is not installed" in page
    assert "<details><summary>stderr" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<boom>" not in page and "<script>alert" not in page


def test_summary_picks_the_best_only_when_clear():
    summary = html.summary_rows(make_results())
    rows = {(r["variant"], r["metric"]): r for r in summary if r["task"] == "exponent"}
    steady = rows["manual", "steady_step_us"]
    assert (steady["best"], steady["runner_up"]) == ("jax-fused", "jax-jit")
    assert steady["verdict"] == "clear difference" and steady["clear"] is True
    assert steady["figure"].startswith("5 µs")
    overlapping = rows["optimizer", "steady_step_us"]  # jax-fused 4.8–6.0 overlaps jax-jit 5.2–5.8
    assert overlapping["best"] == "jax-fused" and overlapping["verdict"] == "no clear difference"
    assert rows["manual", "peak_rss_mb"]["verdict"] == "no clear difference"  # 250 vs 240: within 10%
    memory = rows["optimizer", "peak_rss_mb"]  # 300 vs 240: more than 10% worse
    assert (memory["best"], memory["verdict"]) == ("torch-eager", "clear difference")
    assert rows["manual", "steps_to_converge"]["verdict"] == "no clear difference"  # a tie
    imports = rows["manual", "import_s"]  # per framework: jax 0.40–0.45 against torch 1.0
    assert (imports["best"], imports["runner_up"], imports["verdict"]) == ("jax", "torch", "clear difference")
    assert rows["manual", "first_step_s"]["verdict"] == "no clear difference"  # all 0.5


def test_a_zero_width_spread_is_no_spread():
    """One timed repeat gives min == max: 104 µs against 100 µs is within 10%, not a clear win."""
    results = {"cells": [cell("torch", "eager", "manual", 100.0), cell("jax", "jit", "manual", 104.0)]}
    (steady,) = [r for r in html.summary_rows(results) if r["metric"] == "steady_step_us"]
    assert (steady["best"], steady["verdict"]) == ("torch-eager", "no clear difference")


def test_results_table_keeps_the_digits_that_matter(rendered):
    _, _, page = rendered
    assert ">2.99999<" in page  # final phi to 6 digits, not rounded to "3"
    assert '<span class="spread">4.9–5.1</span>' in page

def test_summary_section_states_the_rule_and_verdicts(rendered):
    _, _, page = rendered
    summary = page[page.index('id="summary"'):page.index('id="parity"')]
    assert "10%" in summary and "overlap" in summary
    assert "no clear difference" in summary and "<strong>jax-fused</strong>" in summary


def test_plots_are_inline_and_written_as_png(rendered):
    results, run_dir, page = rendered
    pngs = sorted((run_dir / "plots").glob("*.png"))
    names = {p.stem for p in pngs}
    assert {"exponent-manual-loss", "exponent-manual-phi", "exponent-speed-steady_step_us",
            "exponent-speed-first_step_s", "mystery-only-accuracy"} <= names
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    assert page.count("<svg") == len(pngs)
    assert "true phi = 3" in page  # the reference line of the phi plot


def test_downsampling_keeps_the_ends():
    steps, values = plots.downsample(list(range(5000)))
    assert len(steps) <= plots.MAX_POINTS and steps[0] == 1 and steps[-1] == 5000 and values[-1] == 4999


def test_true_value_follows_the_overrides():
    results = make_results()
    assert plots.reference_value(results, "exponent", "phi") == 3.0
    results["experiment"]["overrides"] = {"true_phi": 2.5}
    assert plots.reference_value(results, "exponent", "phi") == 2.5
    assert plots.reference_value(results, "exponent", "loss") is None
    assert plots.reference_value(results, "mystery", "accuracy") is None


def test_a_run_with_nothing_ok_still_renders(tmp_path):
    results = make_results()
    results["cells"] = [cell("torch", "eager", "manual", status="failed", error="killed by signal 9"),
                        cell("jax", "jit", "manual", status="skipped", error="not installed")]
    results["parity"] = {}
    del results["environment"]["frameworks"]
    page = html.render_report(results, tmp_path).read_text(encoding="utf-8")
    assert "killed by signal 9" in page and "no data" in page and "No parity recorded" in page
    assert plots.write_plot_pngs(results, tmp_path / "plots") == []


def test_write_plot_pngs_returns_the_paths(tmp_path):
    results = {"cells": [c for c in make_results()["cells"] if c["task"] == "mystery"]}
    paths = plots.write_plot_pngs(results, tmp_path / "plots")
    assert paths and all(p.parent == tmp_path / "plots" and p.exists() for p in paths)


@pytest.mark.skipif(not SAMPLE.exists(), reason="no sample run in runs/sample")
def test_the_sample_run_renders(tmp_path):
    results = json.loads(SAMPLE.read_text(encoding="utf-8"))
    page = html.render_report(copy.deepcopy(results), tmp_path).read_text(encoding="utf-8")
    assert page.count("<tr class=") >= len(results["cells"])
