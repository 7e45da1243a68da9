"""Bad input: exit code 2, one readable line naming the valid choices, never a traceback."""

from __future__ import annotations

import pytest
from conftest import run_cli

CASES = [
    (["run", "nosuchtask"], "unknown task 'nosuchtask'; choose from: exponent"),
    (
        ["run", "--frameworks", "torch,mxnet"],
        "unknown framework 'mxnet'; choose from: torch, tensorflow, jax",
    ),
    (["run", "--modes", "warp"], "unknown mode 'warp'"),
    (["run", "--variant", "sideways"], "unknown variant 'sideways'; choose from: "),
    (["run", "--set", "nosuchkey=1"], "unknown --set key 'nosuchkey'"),
    (["run", "--set", "steps=many"], "bad --set value for task exponent: steps"),
    (["run", "--set", "optimizer=lbfgs"], "bad --set value for task exponent: optimizer"),
    (["run", "--set", "novalue"], "--set expects key=value"),
    (["run", "--device", "tpu"], "unknown device 'tpu'; choose from: auto, cpu, gpu"),
    (["run", "--repeats", "0"], "bad experiment setting: repeats"),
    (["report", "/nonexistent/run"], "no results.json in /nonexistent/run"),
]


@pytest.mark.parametrize("args,expected", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_exits_2_with_one_line(args, expected):
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("spotdiff: error: ")
    assert expected in lines[0]


def test_unknown_variant_lists_the_valid_ones():
    result = run_cli("run", "--variant", "sideways")
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    choices = [c.strip() for c in line.split("choose from:", 1)[1].split(",")]
    assert {"manual", "optimizer"} <= set(choices), line


def test_malformed_toml(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("frameworks = [torch\n")
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "malformed TOML" in result.stderr


def test_unknown_toml_key(tmp_path):
    config = tmp_path / "odd.toml"
    config.write_text('framework = "torch"\n')
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2
    assert "unknown key(s)" in result.stderr and "frameworks" in result.stderr


def test_missing_config_file(tmp_path):
    result = run_cli("run", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2
    assert "config file not found" in result.stderr


def test_unknown_option_is_a_usage_error():
    result = run_cli("run", "--no-such-flag")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "No such option" in result.stderr


def test_list_shows_tasks_modes_and_versions():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    for word in ("exponent", "torch", "tensorflow", "jax", "session", "fused", "compile"):
        assert word in result.stdout


@pytest.mark.parametrize("command", ["report", "export"])
@pytest.mark.parametrize("content,expected", [
    ("", "is empty: its run is just starting"),  # claimed by a run before its first write
    ("{ torn", "is not valid JSON"),
])
def test_an_empty_or_torn_results_file_is_one_line(tmp_path, command, content, expected):
    (tmp_path / "results.json").write_text(content, encoding="utf-8")
    result = run_cli(command, str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("spotdiff: error: ") and expected in line, line
