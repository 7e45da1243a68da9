"""`spotdiff debug`: each probe against the findings table of docs/debugging.md, and its failure paths.

FINDINGS below is that table as data: per framework and mode, what follows from how the mode runs
the user's code (Python runs the line each step, or once per trace on symbolic values; the line
is a traceback frame, or only named in a rewritten message; ...). One real run of every
framework x mode (module fixture) is checked against it cell by cell, and the page is checked
against it too, so the code, the tests and the docs cannot drift apart. The neutral helpers are
also checked in-process with numpy standing in for a framework.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from spotdiff.probes.debug import common, output, schema, user_model
from spotdiff.tasks import task_names

PAIRS = [(f, m) for f, modes in schema.DEBUG_MODES.items() for m in modes]
IDS = [f"{f}-{m}" for f, m in PAIRS]
STEPS = 6  # the batch shape changes once, half way: compiled modes trace at least twice
SHAPES = 2  # batch shapes the print probe feeds: a tracing mode traces exactly once per shape
DOC = Path(__file__).resolve().parents[1] / "docs" / "debugging.md"
NUMPY_OPS = types.SimpleNamespace(
    log=np.log, mean=np.mean, peek=lambda v: {"type": type(v).__name__, "concrete": True, "error": None}
)


@dataclass(frozen=True)
class Finding:
    """One row of the findings table in docs/debugging.md (exponent, the pinned versions)."""

    print_runs: str  # "every step": Python runs the print each step; "per trace": once per traced shape
    value_type: str  # type of the value at the print line
    numpy_reads: bool  # numpy can read that value
    error_line: str  # "traceback": a frame at the user's line; "message": the line only named in the text
    exception: str  # last part of the exception's type name
    pdb_lands: str  # "user frame", "generated copy" (AutoGraph's tf__ rewrite) or "nowhere"
    local_type: str | None  # type of `h` where pdb lands
    nan_tool: str  # "stops at log": stops, names log and the user's line; "does not stop";
    #               "stops, not about NaN": raises about something else and names neither
    graph_ops: int  # ops in the captured graph of exponent's loss_fn
    lowered_ops: int | None = None  # ops in the compiler IR (XLA HLO, StableHLO), compiled modes only


FINDINGS = {
    ("torch", "eager"): Finding("every step", "Tensor", True, "traceback", "RuntimeError",
                                "user frame", "Tensor", "does not stop", 4),
    # the print and peek are graph breaks: they run in Python, every step, on real tensors
    ("torch", "compile"): Finding("every step", "Tensor", True, "message", "TorchRuntimeError",
                                  "nowhere", None, "does not stop", 4),
    ("tensorflow", "eager"): Finding("every step", "EagerTensor", True, "traceback", "InvalidArgumentError",
                                     "user frame", "EagerTensor", "stops at log", 10),
    ("tensorflow", "graph"): Finding("per trace", "SymbolicTensor", False, "message", "ValueError",
                                     "generated copy", "SymbolicTensor", "stops at log", 10),
    ("tensorflow", "xla"): Finding("per trace", "SymbolicTensor", False, "message", "ValueError",
                                   "generated copy", "SymbolicTensor", "stops, not about NaN", 10, 26),
    # value_and_grad traces the forward with linearize tracers even without jit
    ("jax", "eager"): Finding("every step", "LinearizeTracer", False, "traceback", "TypeError",
                              "user frame", "ArrayImpl", "stops at log", 5),
    ("jax", "jit"): Finding("per trace", "LinearizeTracer", False, "traceback", "TypeError",
                            "user frame", "DynamicJaxprTracer", "stops at log", 5, 8),
}


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


def _short(type_name: str | None) -> str | None:
    return type_name and type_name.rsplit(".", 1)[-1]


def test_the_findings_cover_every_framework_and_mode():
    assert list(FINDINGS) == PAIRS


@pytest.mark.parametrize("framework,mode", PAIRS, ids=IDS)
def test_print_runs_as_documented(measured, framework, mode):
    expected, r = FINDINGS[framework, mode], _row(measured[0], framework, mode, "print")
    assert r["steps"] == STEPS and r["printed"]
    if expected.print_runs == "every step":
        assert r["print_count"] == STEPS
    else:  # traced once per batch shape, the print ran at trace time only
        assert r["print_count"] == r["traces"] == SHAPES
    if mode == "eager":
        assert r["traces"] is None
    if (framework, mode) == ("torch", "compile"):  # the print breaks the graph: more graphs than shapes
        assert r["traces"] > SHAPES
    assert (r["value_type"], r["value_concrete"]) == (expected.value_type, expected.numpy_reads)
    assert bool(r["numpy_error"]) == (not expected.numpy_reads)


@pytest.mark.parametrize("framework,mode", PAIRS, ids=IDS)
def test_shape_bug_points_at_the_users_line_as_documented(measured, framework, mode):
    expected, r = FINDINGS[framework, mode], _row(measured[0], framework, mode, "error")
    assert r["user_line"] == user_model.marker_line("shape bug")
    assert _short(r["exception"]) == expected.exception
    in_traceback = expected.error_line == "traceback"
    assert r["user_frame"] is in_traceback and r["frames_user"] == int(in_traceback)
    assert r["message_names_line"] is (not in_traceback)  # a rewritten error names the line in its text
    assert r["frames_user"] + r["frames_framework"] <= r["frames_total"] and r["seconds_to_error"] >= 0


@pytest.mark.parametrize("framework,mode", PAIRS, ids=IDS)
def test_pdb_post_mortem_lands_as_documented(measured, framework, mode):
    expected, r = FINDINGS[framework, mode], _row(measured[0], framework, mode, "postmortem")
    assert r["reached_user_frame"] is (expected.pdb_lands == "user frame")
    assert r["reached_forward"] is (expected.pdb_lands != "nowhere")
    assert r["read_local"] is (expected.pdb_lands != "nowhere")
    assert _short(r["local_type"]) == expected.local_type
    if expected.pdb_lands == "user frame":
        assert r["forward_file"] == "user_model.py"
    elif expected.pdb_lands == "generated copy":
        assert r["forward_file"].startswith("__autograph_generated_file")
    else:
        assert r["forward_file"] is None and "no frame of user_model.py" in r["reason"]


@pytest.mark.parametrize("framework,mode", PAIRS, ids=IDS)
def test_nan_tool_stops_as_documented(measured, framework, mode):
    expected, r = FINDINGS[framework, mode], _row(measured[0], framework, mode, "nan")
    assert r["nan_without_tool"] is True and r["user_line"] == user_model.marker_line("nan")
    facts = (r["stopped"], r["mentions_nan"], r["names_log_op"], r["names_user_line"])
    assert facts == {"stops at log": (True, True, True, True),
                     "does not stop": (False, False, False, False),
                     "stops, not about NaN": (True, False, False, False)}[expected.nan_tool]
    assert bool(r["exception"]) is r["stopped"]
    if expected.nan_tool == "stops, not about NaN":  # check_numerics' own op cannot compile under XLA
        assert "unsupported operations" in r["message"]


@pytest.mark.parametrize("framework,mode", PAIRS, ids=IDS)
def test_graph_of_the_exponent_loss_has_the_documented_op_counts(measured, framework, mode):
    doc, out, _ = measured
    expected, r = FINDINGS[framework, mode], _row(doc, framework, mode, "graph")
    assert r["function"].endswith(".loss_fn") and r["graphs"] == 1
    assert r["ops_total"] == sum(r["op_counts"].values()) == expected.graph_ops
    assert any("pow" in op.lower() for op in r["op_counts"]), r["op_counts"]  # x**phi
    assert r.get("lowered_ops_total") == expected.lowered_ops
    for prefix in ("", "lowered_") if expected.lowered_ops else ("",):
        assert r[f"{prefix}ops_total"] == sum(r[f"{prefix}op_counts"].values())
        assert (out / r[f"{prefix}dump"]).stat().st_size > 0


def documented_findings() -> dict[tuple[str, str], dict[str, str]]:
    """The findings table of docs/debugging.md: (framework, mode) -> column header -> cell."""
    section = DOC.read_text(encoding="utf-8").split("\n## Findings\n", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip().strip("|") for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.split("|")))) for line in lines[2:]]
    return {(row["framework"], row["mode"]): row for row in rows}


PAGE_WORDS = {  # how the page words each finding
    "every step": f"{STEPS}x",
    "per trace": f"{SHAPES}x = {SHAPES} traces",
    "traceback": "user line in traceback",
    "message": "line only in the message",
    "user frame": "user frame",
    "generated copy": "AutoGraph's generated copy",
    "nowhere": "no frame of the forward",
    "stops at log": "stops at log",
    "does not stop": "does not stop",
    "stops, not about NaN": "not about the NaN",
}


@pytest.mark.parametrize("framework,mode", PAIRS, ids=IDS)
def test_the_page_states_the_findings(framework, mode):
    expected, page = FINDINGS[framework, mode], documented_findings()[framework, mode]
    assert page["print (6 steps)"].startswith(PAGE_WORDS[expected.print_runs])
    reads = "numpy reads it" if expected.numpy_reads else "numpy cannot"
    assert page["value at the print"].startswith(expected.value_type) and reads in page["value at the print"]
    assert PAGE_WORDS[expected.error_line] in page["shape bug"] and expected.exception in page["shape bug"]
    assert PAGE_WORDS[expected.pdb_lands] in page["pdb post-mortem"]
    assert expected.local_type is None or re.search(rf"\b{expected.local_type}\b", page["pdb post-mortem"])
    assert PAGE_WORDS[expected.nan_tool].lower() in page["NaN tool"].lower()
    ops = re.findall(r"\d+", page["graph ops"])
    assert [int(n) for n in ops[:2]] == [n for n in (expected.graph_ops, expected.lowered_ops) if n]


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
    code = (
        "import sys, spotdiff.cli\n"
        "from spotdiff.probes.debug import cli, harness, output, schema\n"
        "bad = [m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_html_escapes_what_it_shows(tmp_path):
    doc = {
        "task": "exponent",
        "created": "now",
        "versions": {},
        "settings": {"steps": 2},
        "rows": [schema.row("jax", "jit", "error", "failed", error="<script>alert(1)</script>")],
    }
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
            functools.partial(user_model.forward_nan, NUMPY_OPS, np.ones(3), -np.ones((4, 3)))
        )
    assert common.nan_facts(error, nan_line, "")["names_user_line"]
    assert not common.nan_facts(error, shape_line, "")["names_user_line"]
    assert common.mentions_line(f'File "{user_model.__file__}", line {nan_line}, in f', nan_line)


def test_print_counter_counts_one_line_per_execution():
    user_model.SEEN.clear()
    count, printed = common.count_prints(
        lambda: [user_model.forward_print(NUMPY_OPS, np.ones(3), np.ones((2, 3))) for _ in range(3)]
    )
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


FAULTY_PROBES = '''"""JAX's debug probes, but PROBE's forward faults once (KIND: crash, hang or raise)."""
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
def test_a_failing_probe_is_a_failed_row_and_the_others_are_kept(tmp_path, monkeypatch, fault, reason,
                                                                  children):
    """The harness, driven with a fake probe module (passed in, as a plug-in would be) whose probe faults."""
    from spotdiff.probes.debug import harness

    probe, kind = fault.split(":")
    (tmp_path / "faulty_probes.py").write_text(FAULTY_PROBES.format(probe=probe, kind=kind))
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    settings = harness.Settings(probe_timeout_s=5, probe_module="faulty_probes")
    out, rows = tmp_path / "out", {}
    harness.run_pair("jax", "eager", ["print", "error", "postmortem"], settings, out,
                     lambda row: rows.setdefault(row["probe"], row))
    assert rows[probe]["status"] == "failed" and rows[probe]["error"] == reason
    assert [p for p, r in rows.items() if r["status"] == "ok"] == [p for p in rows if p != probe]
    assert len(rows) == 3
    assert len(list((out / "children").iterdir())) == children
