"""TensorBoard: event files of a real run read back with TensorBoard's own reader, the real server
asked over HTTP, and `spotdiff board`'s failure paths."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import EXPONENT_STEPS as STEPS
from conftest import NATIVE, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from spotdiff.experiment import build_experiment, expand
from spotdiff.record import board as board_launcher
from spotdiff.record import tensorboard
from spotdiff.tasks.exponent.spec import DEFAULT_LR, ExponentParams, build_data

VARIANT = "optimizer"
# The event files of exponent's whole native matrix (conftest.exponent_matrix_run, shared with
# tests/test_exponent.py): one run directory per cell, every one served by `spotdiff board`.
ALL_RUNS = {f"exponent/{c.framework}-{c.mode}-{c.variant}"
            for c in expand(build_experiment({"tasks": ["exponent"], "frameworks": NATIVE}))}
# Read back in detail: one or two modes per framework, chosen for their different graph paths:
# torch.export; a traced tf.function (eager), its own trace (graph), a v1 Session graph; a jaxpr of
# one step, of a scan loop.
EXPECTED_RUNS = {
    f"exponent/{fw}-{mode}-{VARIANT}"
    for fw, mode in [("torch", "eager"), ("tensorflow", "eager"), ("tensorflow", "graph"),
                     ("tensorflow", "session"), ("jax", "eager"), ("jax", "fused")]
}
SCALAR_TAGS = {"train/loss", "train/phi", "train/learning_rate", "time/step_us"}
SIZE_GUIDANCE = {"scalars": 0, "histograms": 0, "tensors": 0}  # 0: keep every event


@pytest.fixture(scope="module")
def tb_run(exponent_matrix_run):
    return exponent_matrix_run


def _cells(results):
    return [c for c in results["cells"] if c["status"] == "ok"]


def _run_of(cell) -> str:
    return f"{cell['task']}/{cell['framework']}-{cell['mode']}-{cell['variant']}"


def _load(run_dir: Path, run: str) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir / "tensorboard" / run), size_guidance=SIZE_GUIDANCE)
    accumulator.Reload()
    return accumulator


def _text(accumulator: EventAccumulator, tag: str) -> str:
    (event,) = accumulator.Tensors(f"{tag}/text_summary")
    return event.tensor_proto.string_val[0].decode()


def test_one_run_directory_per_cell(tb_run):
    results, run_dir = tb_run
    assert len(_cells(results)) == len(ALL_RUNS), [(c["id"], c["error"]) for c in results["cells"]]
    found = {str(p.parent.relative_to(run_dir / "tensorboard"))
             for p in (run_dir / "tensorboard").rglob("events.out.tfevents.*")}
    assert found == ALL_RUNS and EXPECTED_RUNS <= ALL_RUNS
    for cell in _cells(results):
        assert 0 < cell["metrics"]["tensorboard_s"] < 30


@pytest.mark.parametrize("run", sorted(EXPECTED_RUNS))
def test_scalars_match_results_json(tb_run, run):
    results, run_dir = tb_run
    (cell,) = [c for c in _cells(results) if _run_of(c) == run]
    accumulator = _load(run_dir, run)
    assert SCALAR_TAGS <= set(accumulator.Tags()["scalars"])
    for name in ("phi", "loss"):
        events = accumulator.Scalars(f"train/{name}")
        assert [e.step for e in events] == list(range(1, STEPS + 1))
        np.testing.assert_allclose([e.value for e in events], cell["series"][name], rtol=1e-6)
    assert accumulator.Scalars("train/phi")[-1].value == pytest.approx(cell["series"]["phi"][-1], rel=1e-7)
    assert accumulator.Scalars("train/phi")[-1].value == pytest.approx(cell["metrics"]["final_phi"], rel=1e-6)
    learning_rates = [e.value for e in accumulator.Scalars("train/learning_rate")]
    assert learning_rates == pytest.approx([DEFAULT_LR["sgd"]] * STEPS)
    # step time per timed block, at the block's last step (blocks of 50 steps after the first)
    block_steps = [STEPS] if cell["mode"] == "fused" else [1, *range(51, STEPS, 50), STEPS]
    step_times = accumulator.Scalars("time/step_us")
    assert [e.step for e in step_times] == block_steps and all(e.value > 0 for e in step_times)
    # wall times come from the harness's clock: in order, and spanning about the measured training
    walltimes = [e.wall_time for e in accumulator.Scalars("train/phi")]
    assert walltimes == sorted(walltimes) and walltimes[-1] - walltimes[0] < cell["metrics"]["train_s"] + 1


@pytest.mark.parametrize("run", sorted(EXPECTED_RUNS))
def test_histograms_of_phi_and_its_gradient(tb_run, run):
    results, run_dir = tb_run
    (cell,) = [c for c in _cells(results) if _run_of(c) == run]
    accumulator = _load(run_dir, run)
    expected_steps = tensorboard.histogram_steps(STEPS)
    assert expected_steps[:3] == [1, STEPS // 20, STEPS // 10] and expected_steps[-1] == STEPS  # ~20 + 1
    phis = cell["series"]["phi"]
    params = ExponentParams(steps=STEPS)
    data = build_data(params, 0)
    x, y = data["x"].astype(np.float64), data["y"].astype(np.float64)
    for event in accumulator.Histograms("parameters/phi"):
        assert event.histogram_value.num == 1
        assert event.histogram_value.min == pytest.approx(phis[event.step - 1], rel=1e-6)
    assert [e.step for e in accumulator.Histograms("parameters/phi")] == expected_steps
    gradients = accumulator.Histograms("gradients/phi")
    assert [e.step for e in gradients] == expected_steps
    for event in gradients:  # numpy as the oracle: d/dphi mean((x**phi - y)**2) before step k
        phi = params.init_phi if event.step == 1 else phis[event.step - 2]
        oracle = np.mean(2 * (x**phi - y) * x**phi * np.log(x))
        assert event.histogram_value.min == pytest.approx(oracle, rel=1e-3, abs=1e-6)


GRAPH_OPS = {  # an op each framework's graph must contain, as that framework names it
    "torch": "aten.pow.Tensor_Tensor", "tensorflow": "Pow", "jax": "pow",
}


@pytest.mark.parametrize("run", sorted(EXPECTED_RUNS))
def test_graph_and_run_text(tb_run, run):
    results, run_dir = tb_run
    (cell,) = [c for c in _cells(results) if _run_of(c) == run]
    accumulator = _load(run_dir, run)
    assert accumulator.Tags()["graph"]
    ops = {node.op for node in accumulator.Graph().node}
    assert GRAPH_OPS[cell["framework"]] in ops, sorted(ops)
    texts = set(accumulator.Tags()["tensors"])
    if cell["framework"] == "jax":
        assert "pow" in _text(accumulator, "graph/jaxpr")
        assert ("graph/hlo/text_summary" in texts) == (cell["mode"] == "fused")
        if cell["mode"] == "fused":
            assert any("/scan/" in node.name for node in accumulator.Graph().node)  # the loop's group
    if cell["framework"] == "torch":
        assert "aten.pow" in _text(accumulator, "graph/torch_export")
    experiment = _text(accumulator, "run/experiment")
    assert f"| framework | {cell['framework']} |" in experiment and f"| steps | {STEPS} |" in experiment
    version = results["environment"]["frameworks"][cell["framework"]]
    assert version in _text(accumulator, "run/environment")
    assert "steady_step_us" in _text(accumulator, "run/metrics")


def test_event_files_are_small(tb_run):
    _, run_dir = tb_run
    for run in ALL_RUNS:
        size = sum(p.stat().st_size for p in (run_dir / "tensorboard" / run).rglob("*") if p.is_file())
        assert size < 80_000, (run, size)  # 38-65 kB at 300 steps; 2000 steps ~200 kB (docs/tensorboard.md)


def test_neutral_board_images_filters_and_embedding(tmp_path):
    """What a classifier task (digits) writes, with numpy alone: no framework involved."""
    rng = np.random.default_rng(0)
    with tensorboard.Board(tmp_path) as board:
        board.images("inputs", rng.uniform(size=(8, 8, 8, 1)), step=1)
        board.filters("filters/conv1", rng.normal(size=(6, 1, 5, 5)), step=1)
        board.embedding(rng.normal(size=(20, 4)), labels=list(range(20)), images=rng.uniform(size=(20, 8, 8)),
                        tag="penultimate", step=3)
        board.step_scalars({"train/accuracy": [0.5, 0.75]})
    accumulator = EventAccumulator(str(tmp_path), size_guidance=SIZE_GUIDANCE)
    accumulator.Reload()
    assert set(accumulator.Tags()["images"]) == {"inputs", "filters/conv1"}
    assert [e.value for e in accumulator.Scalars("train/accuracy")] == [0.5, 0.75]
    config = (tmp_path / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "penultimate:00003"' in config and "sprite" in config
    embedding_dir = tmp_path / "00003" / "penultimate"
    assert {p.name for p in embedding_dir.iterdir()} == {"tensors.tsv", "metadata.tsv", "sprite.png"}


def test_step_walltimes_follow_the_timed_blocks():
    times = tensorboard.step_walltimes(100.0, [(0, 2.0), (1, 0.5), (3, 1.0)], 3)
    np.testing.assert_allclose(times, [102.5, 103.0, 103.5])


def test_run_names_carry_the_variant_only_when_a_task_has_several():
    assert tensorboard.run_name("jax", "jit", "manual", ("manual", "optimizer")) == "jax-jit-manual"
    assert tensorboard.run_name("jax", "jit", "sgd", ("sgd",)) == "jax-jit"


def test_latest_run_comes_from_history_then_from_runs_folder(tb_run, tmp_path, monkeypatch):
    from spotdiff.record import store

    results, run_dir = tb_run
    monkeypatch.setenv("SPOTDIFF_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for name in ("20200101-000000", "20200102-000000"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    os.utime(tmp_path / "runs" / "20200101-000000", (1e9, 1e9))
    assert board_launcher.latest_run_dir() == (tmp_path / "runs" / "20200102-000000").resolve()
    store.index_run(results, run_dir)
    assert board_launcher.latest_run_dir() == run_dir.resolve()


# the real server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def board_server(tb_run):
    """`spotdiff board RUN_DIR --port N` in its own process group, killed whatever happens."""
    _, run_dir = tb_run
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "spotdiff", "board", str(run_dir), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    try:
        yield process, port
    finally:
        # SIGTERM as a user's `kill` would: the CLI stops TensorBoard (its own session) on the way out.
        # SIGKILL only if that hangs: it would orphan TensorBoard, which is why it is not the first try.
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with socket.socket() as probe:  # the server is gone with the CLI: nothing answers on its port
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"TensorBoard still serves on :{port}"


def test_tensorboard_server_lists_every_run_and_scalar_tag(board_server):
    process, port = board_server
    line = process.stdout.readline()  # printed once TensorBoard answers
    url = f"http://127.0.0.1:{port}/"
    assert line.startswith(f"TensorBoard: {url}"), line
    deadline = time.monotonic() + 60
    while True:  # the server loads event files in the background after it starts answering
        runs = set(_get_json(url + "data/runs"))
        tags = _get_json(url + "data/plugin/scalars/tags")
        if (runs >= ALL_RUNS and all(SCALAR_TAGS <= set(tags.get(r, {})) for r in ALL_RUNS)) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert runs == ALL_RUNS
    for run in ALL_RUNS:
        assert SCALAR_TAGS <= set(tags[run]), (run, tags.get(run))
    run = sorted(EXPECTED_RUNS)[0]
    query = urllib.parse.urlencode({"run": run, "tag": "train/phi"})
    points = _get_json(url + "data/plugin/scalars/scalars?" + query)
    assert len(points) == STEPS  # every step: spotdiff board keeps all scalar samples


# failure paths: exit 2, one line


def _one_error_line(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("spotdiff: error: ")
    return lines[0]


def test_board_without_such_directory(tmp_path):
    line = _one_error_line(run_cli("board", str(tmp_path / "absent")))
    assert "no such run directory" in line


def test_board_on_a_run_without_event_files(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    line = _one_error_line(run_cli("board", str(tmp_path)))
    assert "no TensorBoard event files" in line


def test_board_with_no_run_at_all(tmp_path):
    env_home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-m", "spotdiff", "board"], capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "SPOTDIFF_HOME": str(env_home)}, timeout=60,
    )
    assert "no run found" in _one_error_line(result)


def test_board_on_a_port_in_use(tb_run):
    _, run_dir = tb_run
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        line = _one_error_line(run_cli("board", str(run_dir), "--port", str(port)))
    assert f"port {port}" in line and "in use" in line


def test_board_without_tensorboard_installed(tb_run, monkeypatch, capsys):
    from spotdiff import cli

    _, run_dir = tb_run
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real_find_spec(name, *a),
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["board", str(run_dir)])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["spotdiff: error: TensorBoard is not installed: pip install tensorboard"]


def test_histograms_reach_the_file_in_step_order_and_series_fall_back_to_scalars(tmp_path):
    """TensorBoard's data server drops a series' later steps when an earlier step follows them."""
    with tensorboard.Board(tmp_path) as board:
        board.histogram("gradients/w", np.arange(10.0), 6)
        board.histogram("gradients/w", np.arange(10.0) * 2, 0)
        tensorboard.write_series(
            board, {"train_loss": [3.0, 2.0, 1.0], "misclassified_index": [], "note": ["x"]}
        )
    accumulator = EventAccumulator(str(tmp_path), size_guidance=SIZE_GUIDANCE)
    accumulator.Reload()
    assert [e.step for e in accumulator.Histograms("gradients/w")] == [0, 6]
    assert accumulator.Histograms("gradients/w")[0].histogram_value.sum == pytest.approx(90.0)
    assert accumulator.Tags()["scalars"] == ["series/train_loss"]
    assert [(e.step, e.value) for e in accumulator.Scalars("series/train_loss")] == [
        (1, 3.0),
        (2, 2.0),
        (3, 1.0),
    ]


def test_histograms_of_a_diverged_run_skip_what_cannot_be_binned(tmp_path):
    """NaN, inf and values past TensorBoard's buckets are counted as scalars, never a crash."""
    board = tensorboard.Board(tmp_path)
    board.histogram("parameters/phi", np.array([1.0, np.nan, np.inf, 2.0]), 1)
    board.histogram("parameters/huge", np.array([3e38, -3e38]), 1)
    board.histogram("parameters/nan", np.array([np.nan]), 2)
    board.close()
    events = EventAccumulator(str(tmp_path)).Reload()
    assert events.Tags()["histograms"] == ["parameters/phi"]
    assert events.Histograms("parameters/phi")[0].histogram_value.num == 2
    assert events.Scalars("nonfinite/parameters/phi")[0].value == 2
    assert events.Scalars("nonfinite/parameters/nan")[0].value == 1
    assert events.Scalars("out_of_range/parameters/huge")[0].value == pytest.approx(3e38, rel=1e-6)
