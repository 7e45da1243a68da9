"""Parent side of `spotdiff debug`: one child process per (framework, mode), as every cell runs.

The parent never imports a framework. A probe that crashes its child or runs past its timeout
becomes a failed row with the reason; a fresh child then runs the probes still to do, so every
other row is kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spotdiff import children
from spotdiff import frameworks as fw
from spotdiff.events import read_events
from spotdiff.probes.debug import schema
from spotdiff.tasks import DEFAULT_TASK

POLL_S = 0.1


@dataclass
class Settings:
    """What every child gets; the timeouts are enforced here, in the parent."""

    task: str = DEFAULT_TASK
    steps: int = 6
    threads: int = 1
    probe_timeout_s: float = 120.0
    start_timeout_s: float = 180.0  # child start and framework import, before the first probe
    probe_module: str | None = None  # instead of the framework's own probe module (same functions)


def run_child(job: dict[str, Any], folder: Path, settings: Settings) -> tuple[list[dict], str | None, str]:
    """Run one child on `job`; (its events, why it failed or None, stderr tail)."""
    folder.mkdir(parents=True, exist_ok=True)
    job_path, events_path, stderr_path = folder / "job.json", folder / "events.jsonl", folder / "stderr.log"
    job_path.write_text(json.dumps(job, indent=1), encoding="utf-8")
    events_path.unlink(missing_ok=True)
    reason = None
    with open(folder / "stdout.log", "wb") as stdout, open(stderr_path, "wb") as stderr:
        proc = children.start("spotdiff.probes.debug.worker", [job_path, events_path],
                              pin=children.Pin.first(settings.threads), stdout=stdout, stderr=stderr)
        seen, phase_start = 0, time.perf_counter()

        def phase_timed_out() -> bool:  # each phase (start, one probe) has its own clock
            nonlocal seen, phase_start, reason
            events = read_events(events_path)
            if len(events) != seen:  # progress: the clock restarts for the next phase
                seen, phase_start = len(events), time.perf_counter()
            probing = bool(events) and events[-1]["event"] == "start"
            limit = settings.probe_timeout_s if probing else settings.start_timeout_s
            if time.perf_counter() - phase_start <= limit:
                return False
            what = f"probe {events[-1]['probe']}" if probing else "child start"
            reason = f"{what} timed out after {limit:g} s" + (" (--timeout)" if probing else "")
            return True

        children.watch(proc, on_poll=phase_timed_out, poll_s=POLL_S)
    events = read_events(events_path)
    if reason is None and proc.returncode != 0:
        errors = [e for e in events if e["event"] == "error"]
        if errors:
            reason = f"{errors[-1]['type']}: {errors[-1]['message']}"
        else:
            reason = children.death_reason(proc.returncode, what="worker")
    return events, reason, children.stderr_tail(stderr_path)


def run_pair(framework: str, mode: str, probes: list[str], settings: Settings, out_dir: Path,
             on_row: Callable[[dict], None] = lambda row: None) -> dict[str, str]:
    """Run `probes` for one (framework, mode), restarting after a crash; returns the versions seen."""
    if fw.installed_version(framework) is None:
        for probe in probes:
            reason = f"{fw.FRAMEWORKS[framework].label} is not installed"
            on_row(schema.skipped_row(framework, mode, probe, reason))
        return {}
    versions: dict[str, str] = {}
    remaining, attempt = list(probes), 0
    while remaining:
        attempt += 1
        job = {"framework": framework, "mode": mode, "probes": remaining, "task": settings.task,
               "steps": settings.steps, "threads": settings.threads, "out_dir": str(out_dir.resolve()),
               "probe_module": settings.probe_module}
        folder = out_dir / "children" / f"{framework}-{mode}-{attempt}"
        events, reason, stderr_tail = run_child(job, folder, settings)
        done = {}
        for event in events:
            if event["event"] == "environment":
                versions.update(event["versions"])
            elif event["event"] == "row":
                done[event["row"]["probe"]] = event["row"]
                on_row(event["row"])
        left = [p for p in remaining if p not in done]
        if not left:
            break
        started = [e["probe"] for e in events if e["event"] == "start"]
        reason = reason or "worker ended without reporting the probe"
        # The probe that was running takes the blame; with none running, nothing else can run either.
        blamed = left[:1] if started and started[-1] == left[0] else left
        for probe in blamed:
            on_row(schema.row(framework, mode, probe, "failed", error=reason, stderr_tail=stderr_tail))
        remaining = [p for p in left if p not in blamed]
    return versions
