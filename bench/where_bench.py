"""What `spotdiff where` recording costs: seconds and peak memory of each framework's recorder child,
per task, at the task's default `where_steps` and sizes.

Recorders of one `where` run side by side, each pinned to its own core where there are enough; so
that no two share a core here, frameworks are recorded in groups of at most `cores` (on 2 cores:
torch with tensorflow, then jax with keras), a lone last one paired again with the first (whose
second figure is not used). Round 1 only (no cause reruns: `--hparams aligned`), float32 and float64.

    python bench/where_bench.py --write BENCHMARKS.md [--tasks exponent,digits]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import machine, write_section  # noqa: E402

from spotdiff.locate.plan import recording_frameworks  # noqa: E402
from spotdiff.tasks import get_spec  # noqa: E402

TASKS = ("exponent", "digits", "sequences", "trees", "gpt")


def groups(frameworks: list[str], cores: int) -> list[list[str]]:
    if len(frameworks) < 2:  # `where` compares at least two
        return []
    size = max(2, cores)
    chunks = [frameworks[i:i + size] for i in range(0, len(frameworks), size)]
    if len(chunks[-1]) == 1:
        chunks[-1] = [chunks[-1][0], frameworks[0]]
    return chunks


def where_cost(task: str, frameworks: list[str], out: Path) -> dict[str, dict]:
    """framework -> its recorder's cost in one `spotdiff where` run (round 1)."""
    done = subprocess.run(
        [sys.executable, "-m", "spotdiff", "where", task, "--frameworks", ",".join(frameworks),
         "--hparams", "aligned", "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    try:
        document = json.loads((out / "where.json").read_text())
    except (OSError, ValueError):
        raise SystemExit(f"where {task} {frameworks} failed ({done.returncode}): "
                         f"{(done.stdout + done.stderr)[-2000:]}") from None
    return {name: costs[0] for name, costs in document["cost"]["per_framework"].items()}


def section(rows: list[str]) -> str:
    return "\n".join([
        machine(1, 1, "Recording for `spotdiff where`").replace(
            "1 interleaved pairs (A, B, A, B, ...); median (min–max); ratios are ratios of medians "
            "(min–max of the pairwise ratios).", "one recording per framework and task."),
        "",
        "`python bench/where_bench.py --write BENCHMARKS.md`: round 1 of `spotdiff where TASK --hparams "
        "aligned` (every layer output, the loss, every gradient and parameter after each update, for the "
        "task's `where_steps`, in float32 and float64), recorders pinned to one core each, never two on "
        "one core. wall = the recorder child's life; import = the framework's; record = both dtypes' "
        "recording. Never part of a timed `spotdiff run`.",
        "",
        "| task | framework | wall s | import s | record s | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    work = Path(tempfile.mkdtemp(prefix="where-bench-"))
    rows = []
    for task in args.tasks.split(","):
        seen: set[str] = set()
        recorders = recording_frameworks(task, get_spec(task).modes)
        for index, group in enumerate(groups(recorders, cores)):
            try:
                costs = where_cost(task, group, work / f"{task}-{index}")
            except SystemExit as error:
                rows.append(f"| {task} | {', '.join(group)} | failed: {str(error)[:120]} | | | |")
                continue
            for name in group:
                if name in seen or name not in costs:
                    continue
                seen.add(name)
                cost = costs[name]
                rows.append(f"| {task} | {name} | {cost['wall_s']:.1f} | {cost.get('import_s') or 0:.1f} | "
                            f"{cost.get('record_s') or 0:.1f} | {cost.get('peak_rss_mb') or 0:,.0f} |")
            print(rows[-1], flush=True)
        if args.write:  # after every task: a task that is stopped keeps the ones before it
            write_section(args.write, "where", section(rows), "## Recording for `spotdiff where` (CPU)")
    print(section(rows))


if __name__ == "__main__":
    main()
