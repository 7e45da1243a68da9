"""`spotdiff debug`: each probe against answers known by construction, and its failure paths.

One real run of every framework x mode (module fixture) feeds the parametrized checks; the
neutral helpers are also checked in-process with numpy standing in for a framework.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from spotdiff.probes.debug import common, output, schema, user_model
from spotdiff.tasks import task_names


PAIRS = [(f, m) for f, modes in schema.DEBUG_MODES.items() for m in modes]
IDS = [f"{f}-{m}" for f, m in PAIRS]
STEPS = 6  # the batch shape changes once, half way: compiled modes trace at least twice
NUMPY_OPS = types.SimpleNamespace(
    log=np.log, mean=np.mean, peek=lambda v: {"type": type(v).__name__, "concrete": True, "error": None}
)


def debug_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "spotdiff", "debug", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("debug")
    result = run_cli("debug", "--steps", str(STEPS), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "debug.json").read_text()), out, result.stdout


def _row(doc: dict, framework: str, mode: str, probe: str) -> dict:
    (row,) = [r for r in doc["rows"] if (r["framework"], r["mode"], r["probe"]) == (framework, mode, probe)]
    assert row["status"] == "ok", row
    return row["result"]


@pytest.mark.parametrize("framework,mode", PAIRS, ids=IDS)
def test_print_runs_every_step_in_eager_and_once_per_trace_when_traced(measured, framework, mode):
    r = _row(measured[0], framework, mode, "print")
    assert r["steps"] == STEPS and r["printed"]
    if mode == "eager":
        assert r["traces"] is None and r["print_count"] == STEPS
    else:
        assert r["traces"] >= 2  # two batch shapes
        # Either the print was traced (once per trace, symbolic value) or it ran outside the graph.
        assert r["print_count"] == r["traces"] and not r["value_concrete"] or (
            r["print_count"] == STEPS and r["value_concrete"])
    assert r["value_type"] and (r["value_concrete"] or r["numpy_error"])


@pytest.mark.parametrize("framework,mode", PAIRS, ids=IDS)
def test_error_locality_reports_the_known_line(measured, framework, mode):
    r = _row(measured[0], framework, mode, "error")
    assert r["user_line"] == user_model.marker_line("shape bug")
    assert r["exception"] and r["message"] and r["seconds_to_error"] >= 0
    assert r["frames_user"] + r["frames_framework"] <= r["frames_total"]
    assert not r["user_frame"] or r["frames_user"] >= 1
    if mode == "eager":  # Python executes the line itself
        assert r["user_frame"]


@pytest.mark.parametrize("framework,mode", PAIRS, ids=IDS)
def test_post_mortem_reads_the_forwards_local_when_it_reaches_the_frame(measured, framework, mode):
    r = _row(measured[0], framework, mode, "postmortem")
    error = _row(measured[0], framework, mode, "error")
    assert r["reached_user_frame"] == error["user_frame"]  # pdb walks the same traceback
    assert not r["reached_user_frame"] or r["reached_forward"]
    if r["reached_forward"]:
        assert r["read_local"] and r["local_type"] and r["local_repr"]
    else:
        assert r["reason"]


@pytest.mark.parametrize("framework,mode", PAIRS, ids=IDS)
def test_nan_from_log_of_minus_one_on_the_known_line(measured, framework, mode):
    r = _row(measured[0], framework, mode, "nan")
    assert r["nan_without_tool"] and r["user_line"] == user_model.marker_line("nan")
    assert r["tool"]
    if not r["stopped"]:
        assert not (r["names_log_op"] or r["names_user_line"] or r["exception"])
    else:
        assert r["exception"] and r["message"]


@pytest.mark.parametrize("framework,mode", PAIRS, ids=IDS)
def test_graph_dump_of_the_exponent_loss_holds_its_pow(measured, framework, mode):
    doc, out, _ = measured
    r = _row(doc, framework, mode, "graph")
    assert r["function"].endswith(".loss_fn")
    for prefix in ("", "lowered_") if "lowered_dump" in r else ("",):
        assert r[f"{prefix}ops_total"] == sum(r[f"{prefix}op_counts"].values()) > 0
        assert (out / r[f"{prefix}dump"]).stat().st_size > 0
    assert any("pow" in op.lower() for op in r["op_counts"]), r["op_counts"]  # x**phi


@pytest.mark.skipif("digits" not in task_names(), reason="no digits task here")
def test_graph_of_the_digits_cnn_holds_its_two_convolutions(tmp_path):
    result = debug_cli("digits", "-f", "jax", "-m", "jit", "--probes", "graph", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (row,) = json.loads((tmp_path / "debug.json").read_text())["rows"]
    assert row["status"] == "ok", row
    assert row["result"]["op_counts"].get("conv_general_dilated") == 2, row["result"]["op_counts"]


def test_outputs_json_table_and_self_contained_html(measured):
    doc, out, stdout = measured
    assert doc["schema"] == schema.SCHEMA and doc["task"] == "exponent"
    assert len(doc["rows"]) == len(PAIRS) * len(schema.PROBES)
    assert set(doc["versions"]) == {"torch", "tensorflow", "jax"}
    assert "framework" in stdout and "debug.json" in stdout
    html = (out / "debug.html").read_text()
    assert "<table" in html and "Graph op counts" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_the_parent_side_imports_no_framework():
    code = ("import sys, spotdiff.cli\n"
            "from spotdiff.probes.debug import cli, harness, output, schema\n"
            "bad = [m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_html_escapes_what_it_shows(tmp_path):
    doc = {"task": "exponent", "created": "now", "versions": {}, "settings": {"steps": 2},
           "rows": [schema.row("jax", "jit", "error", "failed", error="<script>alert(1)</script>")]}
    html = output.write_html(tmp_path, doc).read_text()
    assert "<script>alert" not in html and "&lt;script&gt;" in html


# The neutral helpers, in-process, with numpy standing in for a framework.


def test_helpers_find_the_known_lines_with_numpy():
    shape_line, nan_line = user_model.marker_line("shape bug"), user_model.marker_line("nan")
    assert "@" in Path(user_model.__file__).read_text().splitlines()[shape_line - 1]
    call = functools.partial(user_model.forward_shape_bug, NUMPY_OPS, np.ones((3, 1)), np.ones((4, 3)))
    error, seconds, _ = common.timed_error(call)
    facts = common.traceback_facts(error, shape_line)
    assert facts["user_frame"] and facts["exception"] == "ValueError" and seconds >= 0
    assert (facts["frames_total"], facts["frames_user"], facts["frames_framework"]) == (2, 1, 0)
    assert not common.traceback_facts(error, shape_line + 1)["user_frame"]
    pm = common.post_mortem(error, shape_line, "forward_shape_bug")
    assert pm["reached_user_frame"] and pm["read_local"] and pm["local_type"] == "numpy.ndarray"
    assert pm["forward_file"] == "user_model.py"
    with np.errstate(invalid="raise"):  # numpy's own NaN tool
        error, _, _ = common.timed_error(
            functools.partial(user_model.forward_nan, NUMPY_OPS, np.ones(3), -np.ones((4, 3))))
    assert common.nan_facts(error, nan_line, "")["names_user_line"]
    assert not common.nan_facts(error, shape_line, "")["names_user_line"]
    assert common.mentions_line(f'File "{user_model.__file__}", line {nan_line}, in f', nan_line)


def test_print_counter_counts_one_line_per_execution():
    user_model.SEEN.clear()
    count, printed = common.count_prints(
        lambda: [user_model.forward_print(NUMPY_OPS, np.ones(3), np.ones((2, 3))) for _ in range(3)])
    assert count == 3 and len(user_model.SEEN) == 3 and printed.startswith("[[1.")


# Failure paths.

BAD = [
    (["nosuchtask"], "unknown task 'nosuchtask'; choose from: exponent"),
    (["--frameworks", "torch,mxnet"], "unknown framework 'mxnet'; choose from: torch, tensorflow, jax"),
    (["--modes", "warp"], "unknown mode 'warp'; choose from:"),
    (["-f", "torch", "--modes", "jit"], "unknown mode 'jit'; choose from: compile, eager"),
    (["--probes", "tfdbg"], "unknown probe 'tfdbg'; choose from: print, error"),
    (["--steps", "1"], "--steps must be at least 2"),
]


@pytest.mark.parametrize("args,expected", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line(args, expected):
    result = debug_cli(*args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("spotdiff: error: ") and expected in lines[0], lines
    assert "Traceback" not in result.stderr + result.stdout


FAULTY_PROBES = '''"""JAX's debug probes, except that PROBE's forward faults once (KIND: crash, hang or raise)."""
import os, time
from pathlib import Path

from spotdiff.probes.debug import jax_probes, user_model

PROBE, KIND = {probe!r}, {kind!r}
FORWARD = {{"print": user_model.forward_print, "error": user_model.forward_shape_bug}}[PROBE]
FIRED = Path(__file__).with_suffix(".fired")  # once per test: a restarted child runs normally


def make_step(mode, forward, w):
    if forward is FORWARD and not FIRED.exists():
        FIRED.touch()
        if KIND == "crash":
            os.abort()
        if KIND == "hang":
            time.sleep(3600)
        raise RuntimeError(f"injected fault in probe {{PROBE}}")
    return jax_probes.make_step(mode, forward, w)


def __getattr__(name):
    return getattr(jax_probes, name)
'''


@pytest.mark.parametrize("fault,reason,children", [
    ("error:crash", "worker killed by SIGABRT", 2),
    ("print:hang", "probe print timed out after 5 s (--timeout)", 2),
    ("error:raise", "RuntimeError: injected fault in probe error", 1),
], ids=["crash", "timeout", "raise"])
def test_a_failing_probe_is_a_failed_row_and_the_others_are_kept(tmp_path, monkeypatch, fault, reason, children):
    """The harness, driven with a fake probe module (passed in, as a plug-in would be) whose probe faults."""
    from spotdiff.probes.debug import harness

    probe, kind = fault.split(":")
    (tmp_path / "faulty_probes.py").write_text(FAULTY_PROBES.format(probe=probe, kind=kind))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    settings = harness.Settings(probe_timeout_s=5, probe_module="faulty_probes")
    out, rows = tmp_path / "out", {}
    harness.run_pair("jax", "eager", ["print", "error", "postmortem"], settings, out,
                     lambda row: rows.setdefault(row["probe"], row))
    assert rows[probe]["status"] == "failed" and rows[probe]["error"] == reason
    assert [p for p, r in rows.items() if r["status"] == "ok"] == [p for p in rows if p != probe]
    assert len(rows) == 3
    assert len(list((out / "children").iterdir())) == children
