"""Shared fixtures: an isolated SPOTDIFF_HOME, and a CLI runner that runs `python -m spotdiff`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def spotdiff_home(tmp_path_factory) -> Path:
    """History goes to a temporary store for the whole session, never to ~/.spotdiff."""
    home = tmp_path_factory.mktemp("spotdiff-home")
    previous = os.environ.get("SPOTDIFF_HOME")
    os.environ["SPOTDIFF_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("SPOTDIFF_HOME", None)
    else:
        os.environ["SPOTDIFF_HOME"] = previous


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real command line in a child process, as a user would."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "spotdiff", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout,
    )
