"""spotdiff.children, the one process boundary: pin before numpy, time out, name signals, reap groups."""

from __future__ import annotations

import json
import os
import textwrap
import time

import psutil
import pytest
from conftest import machine_cores

from spotdiff import children, frameworks
from spotdiff.executors.local import run_cell
from spotdiff.experiment import build_experiment, expand

CORES = sorted(os.sched_getaffinity(0))  # this test process's share of the machine
needs_two_cores = pytest.mark.skipif(len(machine_cores()) < 2, reason="needs a machine with two cores")


def _module(tmp_path, name: str, source: str) -> dict[str, str]:
    """Write `name.py` into tmp_path; the env that lets a child import it."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}


def test_a_child_is_pinned_before_numpy_is_imported(tmp_path):
    env = _module(tmp_path, "report_pin", """
        import json, os, sys
        from spotdiff import children
        numpy_now = "numpy" in sys.modules
        import numpy  # noqa: F401  (after the pin: its BLAS pool sees the thread variables)
        print(json.dumps({"affinity": sorted(os.sched_getaffinity(0)), "pinned": children.pinned(),
                          "numpy_at_start": numpy_now,
                          "env": {k: os.environ.get(k) for k in children.THREAD_ENV_VARS}}))
    """)
    pin = children.Pin((CORES[-1],), 1)
    finished = children.run("report_pin", timeout_s=60, pin=pin, env=env)
    assert finished.reason is None, finished.stderr
    report = json.loads(finished.stdout)
    assert report["affinity"] == [CORES[-1]]
    assert report["env"] == {name: "1" for name in children.THREAD_ENV_VARS}
    assert report["pinned"]["numpy_loaded_before_pin"] is False and report["numpy_at_start"] is False
    assert report["pinned"]["cpu_affinity"] == [CORES[-1]] and report["pinned"]["threads"] == 1


def test_a_pin_is_not_inherited_by_a_child_started_without_one(tmp_path, monkeypatch):
    monkeypatch.setenv(children.PIN_CORES_VAR, str(CORES[0]))
    monkeypatch.setenv(children.PIN_THREADS_VAR, "1")
    env = _module(tmp_path, "report_affinity", """
        import os
        print(len(os.sched_getaffinity(0)))
    """)
    finished = children.run("report_affinity", timeout_s=60, env=env)
    assert int(finished.stdout) == len(CORES)


def test_timeout_kills_the_whole_group_grandchild_included(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    env = _module(tmp_path, "spawn_and_hang", f"""
        import pathlib, subprocess, time
        grandchild = subprocess.Popen(["sleep", "120"])
        pathlib.Path({str(pid_file)!r}).write_text(str(grandchild.pid))
        time.sleep(120)
    """)
    child = children.start("spawn_and_hang", env=env)
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    start = time.monotonic()
    assert children.watch(child, timeout_s=1.0) is True
    assert time.monotonic() - start < 10
    grandchild = int(pid_file.read_text())
    time.sleep(0.2)
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    assert children.death_reason(child.returncode, True, 1.0) == "child timed out after 1 s"


def test_the_signal_that_killed_a_child_is_named(tmp_path):
    env = _module(tmp_path, "kill_myself", """
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    finished = children.run("kill_myself", timeout_s=60, env=env)
    assert children.signal_name(finished.returncode) == "SIGKILL"
    assert finished.reason == "child killed by SIGKILL (out of memory?)"


def test_a_child_reports_its_own_peak_memory_not_its_parents(tmp_path):
    """A parent holding 400 MB starts a child that allocates 100 MB: the child's peak is its own."""
    env = _module(tmp_path, "own_peak", """
        from spotdiff.children import peak_rss_mb
        block = bytearray(100 * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])  # touch every page
        print(peak_rss_mb())
    """)
    held = bytearray(400 * 1024 * 1024)
    held[::4096] = b"x" * len(held[::4096])
    finished = children.run("own_peak", timeout_s=60, env=env)
    assert finished.reason is None, finished.stderr
    child_peak_mb = float(finished.stdout.split()[-1])
    assert 100 <= child_peak_mb < 300, child_peak_mb  # ru_maxrss would say 400+ (the parent's)
    del held


def test_the_stderr_tail_is_kept(tmp_path):
    env = _module(tmp_path, "noisy_failure", """
        import sys
        for line in range(30):
            print(f"line {line}", file=sys.stderr)
        sys.exit(3)
    """)
    finished = children.run("noisy_failure", timeout_s=60, env=env, stderr_path=tmp_path / "stderr.log")
    assert finished.reason == "child exited with code 3"
    tail = children.stderr_tail(tmp_path / "stderr.log").splitlines()
    assert len(tail) == children.STDERR_TAIL_LINES and tail[-1] == "line 29" and "line 9" not in tail


def test_free_ports_differ_and_can_be_bound():
    import socket

    ports = children.free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_wait_until_ready_sees_the_port_open_or_the_child_die(tmp_path):
    (port,) = children.free_ports(1)
    env = _module(tmp_path, "listen_late", """
        import socket, sys, time
        time.sleep(0.5)
        if sys.argv[1] == "die":
            sys.exit(1)
        server = socket.socket()
        server.bind(("127.0.0.1", int(sys.argv[1])))
        server.listen()
        time.sleep(120)
    """)
    listening = children.start("listen_late", [port], env=env)
    try:
        assert children.wait_until_ready(listening, 30, port=port) is None
    finally:
        children.kill(listening)
    dying = children.start("listen_late", ["die"], env=env)
    assert children.wait_until_ready(dying, 30, port=port) == "it exited with code 1"


@pytest.mark.skipif(frameworks.installed_version("jax") is None, reason="JAX is not installed")
@needs_two_cores
def test_jax_with_one_thread_computes_on_one_thread_even_where_affinity_allows_more(tmp_path):
    """NPROC bounds XLA's CPU pool itself: the pin holds on machines where affinity does not."""
    env = _module(tmp_path, "jax_busy_threads", """
        import json, os, time
        os.sched_setaffinity(0, range(os.cpu_count()))  # as if affinity were not enforced here
        import jax, jax.numpy as jnp
        import psutil
        x = jnp.ones((800, 800), jnp.float32)
        step = jax.jit(lambda a: (a @ a) / 800.0)
        step(x).block_until_ready()
        process = psutil.Process()
        before = {t.id: t.user_time + t.system_time for t in process.threads()}
        for _ in range(60):
            x = step(x)
        x.block_until_ready()
        used = [t.user_time + t.system_time - before.get(t.id, 0.0) for t in process.threads()]
        print(json.dumps(sorted(used, reverse=True)))
    """)
    finished = children.run("jax_busy_threads", timeout_s=300, pin=children.Pin((CORES[0],), 1),
                            env={**env, "JAX_PLATFORMS": "cpu"})
    assert finished.reason is None, finished.stderr[-2000:]
    per_thread_s = json.loads(finished.stdout)
    busy = [s for s in per_thread_s if s > 0.1 * sum(per_thread_s)]
    assert len(busy) == 1, per_thread_s


@pytest.fixture(scope="module")
def cell_settings(tmp_path_factory):
    """The environment settings of one tiny exponent cell per installed framework, threads=1."""
    exp = build_experiment({"tasks": ["exponent"], "repeats": 1, "threads": 1, "device": "cpu",
                            "modes": ["eager"], "variants": ["manual"],
                            "overrides": {"steps": 20, "block_steps": 10, "warmup_steps": 10}})
    root = tmp_path_factory.mktemp("cells")
    settings = {}
    for cell in expand(exp):
        if cell.framework in ("tensorflow", "jax") and frameworks.installed_version(cell.framework):
            outcome = run_cell(cell, root / cell.id, timeout_s=300)
            assert outcome.status == "ok", (outcome.error, outcome.stderr_tail)
            settings[cell.framework] = outcome.environment["settings"]
    return settings


def test_cells_record_the_pin_and_the_framework_pools(cell_settings):
    for framework, settings in cell_settings.items():
        assert settings["threads"] == 1 and len(settings["cpu_affinity"]) == 1, framework
        assert settings["numpy_loaded_before_pin"] is False, framework
        assert settings["intra_op_threads"] == 1, framework
    if "tensorflow" in cell_settings:
        assert cell_settings["tensorflow"]["inter_op_threads"] == 1
