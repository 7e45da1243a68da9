"""`spotdiff board`: find a run, start TensorBoard on loopback as a child, wait until it answers.

TensorBoard runs as a child started by `spotdiff.children` (it may import TensorFlow; the parent
never does), in its own session, so stopping it takes everything it started.
"""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path
from typing import Any

from spotdiff import children
from spotdiff.errors import UserError
from spotdiff.record.tensorboard import SCALAR_SAMPLES, TENSORBOARD_DIR

START_TIMEOUT_S = 120.0


def latest_run_dir() -> Path:
    """The newest run in the history store whose directory still exists, else the newest runs/*."""
    from spotdiff.record import store

    for run in store.list_runs(limit=50):
        if Path(run["path"]).is_dir():
            return Path(run["path"])
    local = [p.resolve() for p in Path("runs").glob("*") if p.is_dir()]
    if local:
        return max(local, key=lambda p: (p / "results.json").stat().st_mtime
                   if (p / "results.json").exists() else p.stat().st_mtime)
    raise UserError(
        "no run found: pass a run directory (spotdiff board RUN_DIR) or make one with `spotdiff run`"
    )


def board_log_dir(run_dir: Path | None) -> Path:
    """The tensorboard/ folder of `run_dir` (default: the latest run), checked; UserError if absent."""
    run_dir = Path(run_dir) if run_dir is not None else latest_run_dir()
    if not run_dir.is_dir():
        raise UserError(f"no such run directory: {run_dir}")
    log_dir = run_dir / TENSORBOARD_DIR
    if not log_dir.is_dir() or not any(log_dir.rglob("events.out.tfevents.*")):
        raise UserError(
            f"no TensorBoard event files in {run_dir} (expected {log_dir}/); runs made by spotdiff write them"
        )
    return log_dir


def check_port(port: int, host: str = "127.0.0.1") -> int:
    """`port` if it can be bound on `host` now; a UserError saying what to do if not."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise UserError(
                f"port {port} on {host} is in use; pick another with --port, or leave it out for a free one"
            ) from None
    return port


def require_tensorboard() -> None:
    if importlib.util.find_spec("tensorboard") is None:
        raise UserError("TensorBoard is not installed: pip install tensorboard")


def start_tensorboard(log_dir: Path, port: int, host: str = "127.0.0.1", **popen: Any) -> children.Child:
    """TensorBoard's own program in a child process; `popen` takes stdout and stderr."""
    require_tensorboard()
    args = [
        "--logdir",
        log_dir,
        "--host",
        host,
        "--port",
        port,
        "--samples_per_plugin",
        f"scalars={SCALAR_SAMPLES}",
    ]
    return children.start("tensorboard.main", args, **popen)


def wait_until_serving(url: str, process: children.Child, timeout_s: float = START_TIMEOUT_S) -> str | None:
    """None once TensorBoard answers at `url`; else why not (it exited, or the time ran out)."""
    return children.wait_until_ready(process, timeout_s, url=url + "data/environment")
