"""report.html and the plots: from a hand-made results dict (no framework is imported in this process),
and from a tiny real run (module fixture) whose children do import them."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from conftest import cell, make_results, run_cli

from spotdiff.report import html, plots


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
               rf'</td>\s*<td[^>]*>{c["mode"]}(<span[^>]*>[^<]*</span>)?</td><td>{c["variant"]}</td>')
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


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> tuple[dict, Path]:
    """A tiny real run: exponent, manual variant, torch and jax eager, 40 steps, one repeat."""
    out = tmp_path_factory.mktemp("sample") / "run"
    result = run_cli("run", "exponent", "-f", "torch,jax", "-m", "eager", "--variant", "manual",
                     "--steps", "40", "--repeats", "1", "--threads", "1", "--out", str(out))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads((out / "results.json").read_text(encoding="utf-8")), out


def test_a_real_run_renders_every_cell_its_phi_and_its_parity(sample_run):
    results, out = sample_run
    page = html.render_report(copy.deepcopy(results), out).read_text(encoding="utf-8")
    cells = results["cells"]
    assert [(c["framework"], c["mode"], c["status"]) for c in cells] == [
        ("torch", "eager", "ok"), ("jax", "eager", "ok")]
    for c in cells:
        row = (rf'<tr class="ok">\s*<td><span class="dot {c["framework"]}"></span>{c["framework"]}'
               rf'</td>\s*<td[^>]*>{c["mode"]}(<span[^>]*>[^<]*</span>)?</td><td>manual</td>')
        assert re.search(row, page), c["id"]
        assert f'{c["metrics"]["final_phi"]:.6g}' in page  # the final phi each framework reached
    # 40 steps of the same arithmetic from phi = 1: the frameworks agree, far from the true phi
    phis = [c["metrics"]["final_phi"] for c in cells]
    assert 1.0 < phis[0] < 3.0 and abs(phis[0] - phis[1]) < 1e-4
    parity = page[page.index('id="parity"'):page.index('id="task-exponent"')]
    assert "PASS" in parity and "FAIL" not in parity and "torch-eager vs jax-eager" in parity
    versions = results["environment"]["frameworks"]
    for text in (results["run_id"], f"torch {versions['torch']}", f"jax {versions['jax']}"):
        assert text in page
    pngs = {p.stem for p in (out / "plots").glob("*.png")}
    assert {"exponent-manual-phi", "exponent-manual-loss", "exponent-speed-steady_step_us"} <= pngs
    assert page.count("<svg") == len(pngs)


def test_spotdiff_report_rerenders_a_real_run(sample_run):
    results, out = sample_run
    (out / "report.html").unlink()
    result = run_cli("report", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert results["run_id"] in page and page.count('<tr class="ok">') >= len(results["cells"])
    assert "<script" not in page.lower()
