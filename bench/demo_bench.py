"""`make demo`'s run, timed: the default `spotdiff run` N times one after another, its wall time as a
user sees it (command start to exit), and where each cell's time goes (median over the runs).

Then what `spotdiff compare` says of that run against itself (nothing may change), against the next
run of the same command (noise between two runs minutes apart), and against one at `--threads 1`
(the slower cells must be flagged, parity must not change).

    python bench/demo_bench.py --runs 3 --write BENCHMARKS.md

Run it on an idle machine: the timed cells must not share the CPU with anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import machine, write_section  # noqa: E402

from spotdiff.compare import parity_verdicts  # noqa: E402


def spotdiff(args: list[str], home: Path) -> tuple[int, str, float]:
    """Run the CLI as a user does; (exit code, output, wall seconds)."""
    env = {**os.environ, "SPOTDIFF_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "140"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "spotdiff", *args], env=env, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - start


def default_run(out: Path, home: Path, extra: list[str] = ()) -> tuple[float, dict[str, Any]]:
    code, text, wall = spotdiff(["run", "--out", str(out), *extra], home)
    if code != 0:
        raise SystemExit(f"spotdiff run {' '.join(extra)} failed ({code}):\n{text[-3000:]}")
    return wall, json.loads((out / "results.json").read_text())


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(present) if present else None


def breakdown(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell (median over runs): wall, framework import, first step/epoch (compile), timed repeats."""
    rows = []
    for cell in runs[0]["cells"]:
        same = [next(c for c in r["cells"] if c["id"] == cell["id"]) for r in runs]
        metrics = [c.get("metrics") or {} for c in same]
        first = [m.get("first_step_s", m.get("first_epoch_s")) for m in metrics]
        rows.append({
            "cell": f"{cell['task']} {cell['framework']}-{cell['mode']} {cell['variant']}",
            "status": "/".join(sorted({c["status"] for c in same})),
            "wall": median([c.get("wall_s") for c in same]),
            "import": median([m.get("import_s") for m in metrics]),
            "first": median(first),
            "repeats": median([m.get("repeats") for m in metrics]),
        })
    return rows


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def compare_line(name: str, a: Path, b: Path, home: Path) -> str:
    code, text, _ = spotdiff(["compare", str(a), str(b), "--out", str(b.parent / f"cmp-{name}")], home)
    counts = next((line.strip() for line in text.splitlines() if "unchanged" in line), text.strip()[:200])
    return f"| {name} | {code} | {counts} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", type=Path, help="BENCHMARKS.md to update (section `demo`)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="demo-bench-"))
    home = work / "home"
    walls, results = [], []
    for index in range(args.runs):
        wall, run = default_run(work / f"default-{index}", home)
        walls.append(wall)
        results.append(run)
        print(f"default run {index + 1}/{args.runs}: {wall:.1f} s", flush=True)
    threads = results[0]["experiment"]["threads"]
    slim_wall, slim = default_run(work / "threads-1", home, ["--threads", "1"])
    print(f"--threads 1: {slim_wall:.1f} s", flush=True)
    rows = breakdown(results)

    def total(column: str) -> float:
        return sum(row[column] or 0.0 for row in rows)

    lines = [
        machine(threads, args.runs, "The default run (`make demo` after install, i.e. `spotdiff run`)")
        .replace("interleaved pairs (A, B, A, B, ...)", "runs one after another"),
        "",
        f"`python bench/demo_bench.py --runs {args.runs} --write BENCHMARKS.md`. Wall time of the whole "
        f"command, start to exit, as a user waits for it: **median {statistics.median(walls):.0f} s** "
        f"(min {min(walls):.0f}, max {max(walls):.0f}; runs: {', '.join(f'{w:.0f}' for w in walls)}); "
        f"{len(rows)} cells, threads {threads}. Per cell, median over the runs: wall = the child's whole "
        "life (start, import, data, compile, warm-up, timed repeats, records); import = the framework's "
        "import in the child; first = first step or epoch (compile and warm-up).",
        "",
        "| cell | status | wall s | import s | first s | repeats |",
        "|---|---|---:|---:|---:|---:|",
        *[f"| {r['cell']} | {r['status']} | {fmt(r['wall'])} | {fmt(r['import'], '.2f')} | "
          f"{fmt(r['first'], '.2f')} | {fmt(r['repeats'], '.0f')} |" for r in rows],
        f"| **sum of cells** | | {fmt(total('wall'))} | {fmt(total('import'))} | {fmt(total('first'))} | |",
        "",
        f"`spotdiff compare` (threshold 1.1; exit 1 = something got worse beyond noise). The `--threads 1` "
        f"run took {slim_wall:.0f} s.",
        "",
        "| comparison | exit | what it reports |",
        "|---|---:|---|",
        compare_line("run vs itself", work / "default-0", work / "default-0", home),
        compare_line("run vs the next run", work / "default-0", work / "default-1", home)
        if args.runs > 1 else "",
        compare_line(f"threads {threads} vs threads 1", work / "default-0", work / "threads-1", home),
    ]
    verdicts, slim_verdicts = parity_verdicts(results[0]), parity_verdicts(slim)
    lines.append("")
    lines.append(f"Parity verdicts at threads {threads}: {verdicts}; at threads 1: "
                 f"{'the same' if verdicts == slim_verdicts else slim_verdicts}.")
    text = "\n".join(line for line in lines if line is not None)
    print(text)
    if args.write:
        write_section(args.write, "demo", text, "## The default run (`make demo`, CPU)")


if __name__ == "__main__":
    main()
