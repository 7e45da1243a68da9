"""Benchmark behind BENCHMARKS.md: µs/step of every exponent mode, with and without recording.

    python bench/exponent_bench.py [--steps 2000] [--repeats 5] [--write BENCHMARKS.md]

Runs the full framework x mode x variant matrix twice through the normal runner (one child per
cell, one cell at a time): once recording loss and phi at every step, once not. The difference is
the cost of recording, which must stay small against the step it measures.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from spotdiff.experiment import build_experiment
from spotdiff.orchestrate import run_experiment


def run_matrix(steps: int, repeats: int, record: bool, out: Path) -> dict:
    exp = build_experiment(
        {"tasks": ["exponent"], "repeats": repeats, "device": "cpu",
         "overrides": {"steps": steps, "record_series": record}}
    )
    results, _ = run_experiment(exp, out, index=False, render=False, overwrite=True)
    return results


def table(on: dict, off: dict) -> str:
    env = on["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["frameworks"].items() if v)
    lines = [
        f"Machine: {env['cpu_model']}, {env['cpu_cores']} cores, threads {env['threads']}, "
        f"device {env['device']}, {env['dtype']}; Python {env['python']}; {versions}.",
        "",
        "| framework | mode | variant | first step (s) | steady µs/step (min–max), recording | "
        "steady µs/step, not recording | recording overhead |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    off_cells = {c["id"]: c for c in off["cells"]}
    overheads = []
    for cell in on["cells"]:
        other = off_cells.get(cell["id"])
        if cell["status"] != "ok" or not other or other["status"] != "ok":
            lines.append(f"| {cell['framework']} | {cell['mode']} | {cell['variant']} | failed: {cell['error']} | | | |")
            continue
        m, o = cell["metrics"], other["metrics"]
        overhead = (m["steady_step_us"] - o["steady_step_us"]) / o["steady_step_us"]
        overheads.append(overhead)
        lines.append(
            f"| {cell['framework']} | {cell['mode']} | {cell['variant']} | {m['first_step_s']:.3f} | "
            f"{m['steady_step_us']:.1f} ({m['steady_step_us_min']:.1f}–{m['steady_step_us_max']:.1f}) | "
            f"{o['steady_step_us']:.1f} | {overhead:+.1%} |"
        )
    if overheads:
        lines += ["", f"Median recording overhead across cells: {statistics.median(overheads):+.1%}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="steps per repeat (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per cell (default 5)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="where the runs go (default runs/bench)")
    parser.add_argument("--write", type=Path, help="replace the exponent section of this markdown file")
    args = parser.parse_args()
    on = run_matrix(args.steps, args.repeats, True, args.out / "recording")
    off = run_matrix(args.steps, args.repeats, False, args.out / "not-recording")
    text = table(on, off)
    print(text)
    if args.write:
        begin, end = "<!-- exponent-bench:begin -->", "<!-- exponent-bench:end -->"
        doc = args.write.read_text() if args.write.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
        head, _, rest = doc.partition(begin)
        _, _, tail = rest.partition(end)
        args.write.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


if __name__ == "__main__":
    main()
