"""The report's "Static vs dynamic" section, from hand-made results (no framework imported)."""

from __future__ import annotations

import copy

from conftest import cell, make_results

from spotdiff.report.html import render_report
from spotdiff.report.static_dynamic import section, section_rows


def _with_static_dynamic_cells(results: dict) -> dict:
    results = copy.deepcopy(results)
    seq = {"series": {"train_loss": [0.7, 0.6], "epoch_s": [2.0, 1.5]}, "task": "sequences"}
    results["cells"] += [
        cell(
            "torch",
            "pad-max",
            "adam",
            padding_waste=7.17,
            epoch_s=1.56,
            first_epoch_s=1.73,
            real_tokens_per_s=35700.0,
            compilations=0,
            test_accuracy=0.74,
            **seq,
        ),
        cell(
            "torch",
            "packed",
            "adam",
            padding_waste=1.0,
            epoch_s=1.95,
            first_epoch_s=2.03,
            real_tokens_per_s=28700.0,
            compilations=0,
            test_accuracy=0.75,
            **seq,
        ),
        cell(
            "jax",
            "pad-batch",
            "adam",
            padding_waste=5.29,
            epoch_s=3.72,
            first_epoch_s=7.86,
            real_tokens_per_s=15000.0,
            compilations=5,
            test_accuracy=0.73,
            **seq,
        ),
        cell("tensorflow", "packed", "adam", status="failed", task="sequences", error="worker <crashed>"),
        cell(
            "jax",
            "jit-per-structure",
            "adam",
            task="trees",
            padding_waste=1.0,
            epoch_s=0.2,
            first_epoch_s=23.5,
            trees_per_s=1908.0,
            compilations=25,
            test_accuracy=0.735,
            series={"train_loss": [0.65, 0.5], "epoch_s": [23.5, 0.2]},
        ),
    ]
    return results


def test_section_has_a_row_per_cell_and_a_point_per_sequences_cell():
    results = _with_static_dynamic_cells(make_results())
    rows = section_rows(results)
    assert [(r["task"], r["framework"], r["mode"]) for r in rows] == [
        ("sequences", "torch", "pad-max"),
        ("sequences", "torch", "packed"),
        ("sequences", "tensorflow", "packed"),
        ("sequences", "jax", "pad-batch"),
        ("trees", "jax", "jit-per-structure"),
    ]
    assert rows[0]["throughput"] == "35,700 tokens/s" and rows[0]["padding_waste"] == "7.17"
    assert rows[-1]["throughput"] == "1,908 trees/s" and rows[-1]["compilations"] == "25"
    assert "static argument" in rows[-1]["strategy"]  # the spec's mode help
    chart = section(results)["chart"]
    assert chart.startswith("<svg") and "epoch time vs padding waste" in chart
    for label in ("torch-pad-max", "torch-packed", "jax-pad-batch"):  # the ok sequences cells, labelled
        assert label in chart
    assert "tensorflow-packed" not in chart and "jit-per-structure" not in chart


def test_report_shows_the_section_with_its_chart(tmp_path):
    html = render_report(_with_static_dynamic_cells(make_results()), tmp_path).read_text()
    start = html.index('<section id="static-vs-dynamic">')
    body = html[start : html.index("</section>", start)]
    assert "<h2>Static vs dynamic</h2>" in body and "<svg" in body
    assert "35,700 tokens/s" in body and "1,908 trees/s" in body
    assert "worker &lt;crashed&gt;" in body  # failed cells say why, escaped


def test_trees_only_run_gets_the_table_without_a_chart():
    results = _with_static_dynamic_cells(make_results())
    results["cells"] = [c for c in results["cells"] if c["task"] == "trees"]
    assert section(results)["chart"] is None and len(section(results)["rows"]) == 1


def test_section_absent_without_sequences_or_trees_cells(tmp_path):
    results = make_results()
    assert section(results) is None
    assert 'id="static-vs-dynamic"' not in render_report(results, tmp_path).read_text()
