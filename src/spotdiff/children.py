"""THE process boundary: every child spotdiff starts is started, pinned, watched and reaped here.

    start("spotdiff.worker", [cell_json, events], pin=Pin.first(threads), stdout=..., stderr=...)

A child runs as `python -m spotdiff.children MODULE ARGS...`: this module's `__main__` calls
`pin_from_env()` (the one pin function: CPU affinity and every thread variable) and only then runs
MODULE, so numpy and the frameworks are imported after the pin, in every kind of child. Each
framework's own pools are sized right after its import by `backends/<fw>/env.configure`, from the
same thread count. A child gets its own session, so one `kill` takes it and whatever it started
(compile workers, servers' helpers); data-parallel ranks join their launcher's group instead, so
the cell's group kill reaches them too.

This module imports neither numpy nor a framework.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

# Thread variables every pinned child gets, all set to its thread count; who reads each one:
THREAD_ENV_VARS = {
    "OMP_NUM_THREADS": "OpenMP: PyTorch's intra-op pool, oneDNN",
    "MKL_NUM_THREADS": "MKL",
    "OPENBLAS_NUM_THREADS": "OpenBLAS (numpy)",
    "TF_NUM_INTRAOP_THREADS": "TensorFlow's intra-op pool",
    "TF_NUM_INTEROP_THREADS": "TensorFlow's inter-op pool",
    "NPROC": "XLA's CPU client (JAX): the size of its thread pool (else one per core it may use)",
}
PIN_CORES_VAR = "SPOTDIFF_PIN_CORES"  # "0,1": set by start(), applied by pin_from_env()
PIN_THREADS_VAR = "SPOTDIFF_PIN_THREADS"
# How often watch() calls its on_poll (memory sampling, phase deadlines): each call reads /proc for
# the child's whole tree, CPU time taken from the machine a timed cell runs on. The child's exit is
# seen at once (watch waits on it), not at the next poll.
POLL_S = 0.25
STDERR_TAIL_LINES = 20
_pinned: dict[str, Any] = {}


@dataclass(frozen=True)
class Pin:
    """The CPU cores a child may run on and the size of every thread pool in it."""

    cores: tuple[int, ...]
    threads: int

    @classmethod
    def first(cls, threads: int, offset: int = 0) -> Pin:
        """`threads` threads on the first `threads` cores this process may use (fewer if it has
        fewer), counted from its `offset`-th core round the ring (children side by side)."""
        usable = sorted(os.sched_getaffinity(0))
        start = (offset * threads) % len(usable)
        return cls(tuple(sorted((usable[start:] + usable[:start])[:threads])), threads)

    @classmethod
    def usable(cls) -> Pin:
        """Every core this process may use, one thread per core (untimed children: export, ...)."""
        return cls.on(sorted(os.sched_getaffinity(0)))

    @classmethod
    def on(cls, cores: Sequence[int]) -> Pin:
        """Exactly `cores`, one thread per core."""
        return cls(tuple(sorted(cores)), len(cores))

    def env(self) -> dict[str, str]:
        """What a child needs in its environment to pin itself with `pin_from_env()`."""
        return {PIN_CORES_VAR: ",".join(map(str, self.cores)), PIN_THREADS_VAR: str(self.threads)}


def pin(cores: Sequence[int], threads: int) -> dict[str, Any]:
    """Pin THIS process: CPU affinity and every thread variable; call it before numpy is imported.

    Returns what was set, with whether numpy (hence a BLAS pool) was already loaded.
    """
    os.sched_setaffinity(0, list(cores))
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(threads)
    _pinned.clear()
    _pinned.update({
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "threads": threads,
        "thread_env": {name: os.environ[name] for name in THREAD_ENV_VARS},
        "numpy_loaded_before_pin": "numpy" in sys.modules,
    })
    return dict(_pinned)


def pin_from_env() -> dict[str, Any]:
    """Apply the pin `start()` put in this process's environment (nothing if there is none)."""
    cores = os.environ.get(PIN_CORES_VAR)
    if not cores:
        return {}
    return pin([int(c) for c in cores.split(",")], int(os.environ[PIN_THREADS_VAR]))


def pinned() -> dict[str, Any]:
    """What `pin()` set in this process ({} when it was not pinned)."""
    return dict(_pinned)


class Child(subprocess.Popen):
    """A started child; `own_session` says whether killing its process group is ours to do."""

    own_session: bool = True


def start(
    module: str,
    args: Sequence[str] = (),
    *,
    pin: Pin | None = None,
    env: dict[str, str] | None = None,
    own_session: bool = True,
    **popen: Any,
) -> Child:
    """Start `python -m MODULE ARGS` the spotdiff way: pinned (if `pin`), in its own session.

    `env` adds to (or, with value "", clears) this process's environment; `popen` goes to Popen
    (stdout, stderr, text, cwd). stdin is closed.
    """
    child_env = {**os.environ, **(env or {})}
    for name in (PIN_CORES_VAR, PIN_THREADS_VAR):  # a pin is never inherited by accident
        child_env.pop(name, None)
    if pin is not None:
        child_env.update(pin.env())
    command = [sys.executable, "-m", "spotdiff.children", module, *map(str, args)]
    popen.setdefault("stdin", subprocess.DEVNULL)
    child = Child(command, env=child_env, start_new_session=own_session, **popen)
    child.own_session = own_session
    return child


def kill(child: subprocess.Popen) -> None:
    """SIGKILL the child, everything it started (its process group, or its descendants when it
    shares ours) and reap it. Safe to call on a finished child: leftover grandchildren die too."""
    victims = []
    if child.returncode is None:  # once reaped, its pid may be someone else's
        try:
            victims = psutil.Process(child.pid).children(recursive=True)
        except psutil.Error:
            pass
    if getattr(child, "own_session", False):
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for victim in victims:
        try:
            victim.kill()
        except psutil.Error:
            pass
    if child.poll() is None:
        child.kill()
    child.wait()


def kill_group(pid: int) -> bool:
    """SIGKILL the process group led by `pid` (a child of another process, e.g. an orphan)."""
    try:
        os.killpg(pid, signal.SIGKILL)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop(child: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the child's group (a server's clean shutdown), SIGKILL after `grace_s`; reap."""
    if child.poll() is None:
        try:
            if getattr(child, "own_session", False):
                os.killpg(child.pid, signal.SIGTERM)
            else:
                child.terminate()
        except ProcessLookupError:
            pass
        try:
            child.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    kill(child)


def watch(
    child: subprocess.Popen,
    timeout_s: float | None = None,
    on_poll: Callable[[], bool] | None = None,
    poll_s: float = POLL_S,
) -> bool:
    """Wait for `child` to end; True if it was killed for running past `timeout_s` or because
    `on_poll` (called every `poll_s`) returned True. The whole group is killed on the way out,
    also on Ctrl-C or any error here (which then propagates)."""
    start_s = time.perf_counter()
    stopped = False
    try:
        while child.poll() is None:
            if on_poll is not None and on_poll():
                stopped = True
                break
            if timeout_s is not None and time.perf_counter() - start_s > timeout_s:
                stopped = True
                break
            try:
                child.wait(poll_s)
            except subprocess.TimeoutExpired:
                pass
    finally:
        kill(child)  # a finished child's leftover grandchildren, or the child itself
    return stopped


def signal_name(returncode: int | None) -> str | None:
    """'SIGKILL' for a child killed by SIGKILL (returncode -9); None if no signal ended it."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def death_reason(returncode: int | None, timed_out: bool = False, timeout_s: float | None = None,
                 what: str = "child") -> str | None:
    """One line on why a child ended badly ('timed out after 5 s', 'killed by SIGKILL (out of
    memory?)', 'exited with code 3'); None for a clean exit."""
    if timed_out:
        return f"{what} timed out after {timeout_s:g} s" if timeout_s is not None else f"{what} was stopped"
    name = signal_name(returncode)
    if name is not None:
        return f"{what} killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    if returncode:
        return f"{what} exited with code {returncode}"
    return None


def peak_rss_mb() -> float:
    """This process's own peak resident memory (MB), from the kernel's high-water mark of its memory
    map. Not `getrusage().ru_maxrss`: on Linux a child inherits its parent's peak across fork and
    exec, so every child of a large parent (a test process, a notebook) would report the parent's."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource  # not Linux: the portable figure, with its caveat

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** (2 if sys.platform == "darwin" else 1)


def stderr_tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    """The last `lines` lines of a child's log ('' if there is none)."""
    if not Path(path).exists():
        return ""
    return "\n".join(Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@dataclass
class Finished:
    """A child run to its end by `run()`."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    reason: str | None  # death_reason(): None when it exited with 0


def run(module: str, args: Sequence[str] = (), *, timeout_s: float, pin: Pin | None = None,
        env: dict[str, str] | None = None, stderr_path: Path | None = None) -> Finished:
    """Run a child to its end and capture its stdout (and stderr, or write it to `stderr_path`)."""
    with ExitStack() as stack:
        err = stack.enter_context(open(stderr_path, "w")) if stderr_path else subprocess.PIPE
        child = start(module, args, pin=pin, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        timed_out = False
        try:
            out, err_text = child.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill(child)
            out, err_text = child.communicate()
        finally:
            kill(child)
    if stderr_path:
        err_text = stderr_tail(stderr_path, 200)
    reason = death_reason(child.returncode, timed_out, timeout_s)
    return Finished(child.returncode, out or "", err_text or "", timed_out, reason)


def free_ports(count: int = 1, host: str = "127.0.0.1") -> list[int]:
    """`count` different ports free on `host` right now (the OS picks them, held together)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                   for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def wait_until_ready(
    child: subprocess.Popen,
    timeout_s: float,
    *,
    url: str | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    poll_s: float = 0.2,
) -> str | None:
    """Wait until `url` answers with a success status, or `port` accepts connections.

    None when ready; else why not ('exited with code 1', 'not ready after 120 s').
    """
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if url is not None:
                with urllib.request.urlopen(url, timeout=2):
                    return None
            else:
                socket.create_connection((host, int(port)), timeout=2).close()
                return None
        except OSError:
            pass
        if child.poll() is not None:
            return death_reason(child.returncode, what="it") or "it exited before it was ready"
        if time.monotonic() > deadline:
            return f"not ready after {timeout_s:g} s"
        time.sleep(poll_s)


def _main(argv: list[str]) -> None:
    """`python -m spotdiff.children MODULE ARGS...`: pin, then run MODULE as __main__."""
    import runpy

    from spotdiff import children  # this file runs as __main__: keep the pin record in the module

    children.pin_from_env()
    if not argv:
        sys.exit("usage: python -m spotdiff.children MODULE [ARGS...]")
    sys.argv = [argv[0], *argv[1:]]
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
