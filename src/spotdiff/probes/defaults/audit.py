"""The defaults audit, parent side: one child process per framework, then the comparison.

The parent never imports a framework. Children run side by side (the audit measures behaviour,
not time), each under one deadline; a child that crashes or runs out of time turns every
component it did not finish into a failed row that says why.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from spotdiff import children
from spotdiff import frameworks as fw
from spotdiff.errors import UserError
from spotdiff.probes.defaults import compare
from spotdiff.probes.defaults.components import OPTIMIZER_STEPS, select

CHILD_MODULE = "spotdiff.probes.defaults.child"
DEFAULT_TIMEOUT_S = 600.0
SCHEMA_VERSION = 1


def _stderr_line(path: Path) -> str:
    lines = (
        [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if path.exists()
        else []
    )
    return lines[-1].strip()[:200] if lines else "no output"


def _failure(proc: subprocess.Popen, timed_out: bool, timeout_s: float, stderr: Path) -> str | None:
    reason = children.death_reason(proc.returncode, timed_out, timeout_s)
    if reason and not timed_out and not children.signal_name(proc.returncode):
        reason += f": {_stderr_line(stderr)}"
    return reason


def run_children(
    frameworks: list[str],
    components: list[str],
    seed: int,
    steps: int,
    work_dir: Path,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    threads: int = 1,
    child_module: str = CHILD_MODULE,
) -> dict[str, dict[str, Any]]:
    """Run one child per framework; framework -> {status, error, versions, components}.

    Each child is pinned to its own `threads` cores where there are enough (they run side by side).
    `child_module` is the child's module (tests swap in a crashing one).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    request = work_dir / "request.json"
    request.write_text(
        json.dumps({"components": components, "seed": seed, "steps": steps, "threads": threads})
    )
    started = {}
    for index, name in enumerate(frameworks):
        out, stderr = work_dir / f"{name}.json", work_dir / f"{name}.stderr.log"
        out.unlink(missing_ok=True)
        with open(stderr, "wb") as err:
            proc = children.start(
                child_module,
                [name, request, out],
                pin=children.Pin.first(threads, index),
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        started[name] = (proc, out, stderr)
    deadline, answers = time.monotonic() + timeout_s, {}
    for name, (proc, out, stderr) in started.items():
        timed_out = False
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            children.kill(proc)  # it and anything it started
        try:
            answer = json.loads(out.read_text())
        except (OSError, ValueError):
            answer = {}
        failure = _failure(proc, timed_out, timeout_s, stderr)
        done = answer.get("components", {})
        reason = failure or "child gave no answer"
        answers[name] = {
            "status": "failed" if failure or answer.get("status") != "done" else "ok",
            "error": failure if failure else (None if answer.get("status") == "done" else reason),
            "versions": answer.get("versions", {}),
            "components": {c: done.get(c) or {"status": "failed", "error": reason} for c in components},
        }
    return answers


def audited_frameworks() -> list[str]:
    """Frameworks with a defaults probe (`<impl_prefix>_probe.py` here), found without importing it."""
    return [
        name
        for name, framework in fw.FRAMEWORKS.items()
        if importlib.util.find_spec(f"spotdiff.probes.defaults.{framework.impl_prefix}_probe") is not None
    ]


def run_audit(
    components: list[str] | None = None,
    frameworks: list[str] | None = None,
    seed: int = 0,
    steps: int = OPTIMIZER_STEPS,
    out_dir: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    child_module: str = CHILD_MODULE,
) -> tuple[dict[str, Any], Path]:
    """Audit `components` (names or groups; default all) across `frameworks` (default: installed).

    Writes defaults.json and defaults.html into `out_dir` (default runs/defaults-<time>) and
    returns (results, out_dir). Unknown names raise UserError.
    """
    names = select(components)
    chosen = []
    audited = audited_frameworks()
    for name in frameworks or audited:
        canonical = fw.canonical(name)
        if canonical not in audited:
            known = "no defaults probe for" if canonical else "unknown"
            raise UserError(f"{known} framework {name!r}; choose from: {', '.join(audited)}")
        chosen.append(canonical)
    chosen = list(dict.fromkeys(chosen))
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    out_dir = Path(out_dir or Path("runs") / time.strftime("defaults-%Y%m%d-%H%M%S"))
    installed = [f for f in chosen if fw.installed_version(f) is not None]
    answers = run_children(
        installed, names, seed, steps, out_dir / "children", timeout_s, child_module=child_module
    )
    framework_status = {
        f: {"status": "skipped", "error": f"{fw.FRAMEWORKS[f].label} is not installed"}
        for f in chosen
        if f not in installed
    }
    framework_status.update(
        {f: {k: a[k] for k in ("status", "error", "versions")} for f, a in answers.items()}
    )
    rows, inits = [], []
    for name in names:
        entries = {f: answers[f]["components"][name] for f in installed}
        rows.append(compare.assess(name, entries, seed, steps))
        inits += compare.assess_init(name, entries)
    results = {
        "schema": SCHEMA_VERSION,
        "kind": "defaults-audit",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": {"python": sys.version.split()[0], "platform": platform.platform()},
        "seed": seed,
        "optimizer_steps": steps,
        "tolerance": compare.TOLERANCE,
        "match_tolerance": compare.MATCH_TOLERANCE,
        "frameworks": framework_status,
        "components": rows,
        "initialisers": [r for r in inits if any(r["frameworks"].values())],
    }
    from spotdiff.probes.defaults.render import write_outputs

    write_outputs(results, out_dir)
    return results, out_dir
