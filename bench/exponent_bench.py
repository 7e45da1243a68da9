"""Benchmark behind BENCHMARKS.md: µs/step of every exponent mode, with and without recording.

    python bench/exponent_bench.py [--steps 2000] [--repeats 3] [--rounds 2] [--write BENCHMARKS.md]

Runs the native framework x mode x variant matrix through the normal runner (one child per cell,
one cell at a time), recording loss and phi at every step and not, interleaved: recording, not,
recording, not (`--rounds` pairs). The difference is the cost of recording, which must stay small
against the step it measures: the ratio of the medians over rounds, with the min–max of the
per-round ratios. Keras-on-X cells: bench/keras_bench.py.
Time: about 2 minutes per matrix on 2 cores; 2 rounds = 4 matrices, ~8 minutes.
Check it works: `--steps 200 --repeats 1 --rounds 1`.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from spotdiff.experiment import build_experiment
from spotdiff.orchestrate import run_experiment

NATIVE = ["torch", "tensorflow", "jax"]


def run_matrix(steps: int, repeats: int, record: bool, out: Path) -> dict:
    exp = build_experiment(
        {
            "tasks": ["exponent"],
            "frameworks": NATIVE,
            "repeats": repeats,
            "device": "cpu",
            "overrides": {"steps": steps, "record_series": record},
        }
    )
    results, _ = run_experiment(exp, out, index=False, render=False, overwrite=True)
    return results


def merge(rounds: list[dict]) -> tuple[dict, dict[str, list[dict]]]:
    """The first round's results (for the environment and the cell order) and each cell's metrics
    over all rounds ([] if it failed in any)."""
    by_id: dict[str, list[dict]] = {}
    for results in rounds:
        for cell in results["cells"]:
            by_id.setdefault(cell["id"], []).append(cell["metrics"] if cell["status"] == "ok" else None)
    return rounds[0], {k: v if all(v) else [] for k, v in by_id.items()}


def table(on_rounds: list[dict], off_rounds: list[dict]) -> str:
    on, on_metrics = merge(on_rounds)
    _, off_metrics = merge(off_rounds)
    env = on["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["frameworks"].items() if v)
    lines = [
        f"Machine: {env['cpu_model']}, {env['cpu_cores']} cores, threads {env['threads']}, "
        f"device {env['device']}, {env['dtype']}; Python {env['python']}; {versions}. "
        f"{len(on_rounds)} interleaved rounds (recording, not recording, ...); µs/step: median over rounds "
        "of each process's median (min–max of the processes' repeats); overhead: ratio of medians - 1 "
        "(min–max over rounds).",
        "",
        "| framework | mode | variant | first step (s) | steady µs/step (min–max), recording | "
        "steady µs/step (min–max), not recording | recording overhead (min–max) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    overheads = []
    for cell in on["cells"]:
        ms, os_ = on_metrics.get(cell["id"], []), off_metrics.get(cell["id"], [])
        if not ms or not os_:
            lines.append(
                f"| {cell['framework']} | {cell['mode']} | {cell['variant']} | failed in a round | | | |"
            )
            continue
        a, b = [m["steady_step_us"] for m in ms], [o["steady_step_us"] for o in os_]
        overhead = statistics.median(a) / statistics.median(b) - 1
        per_round = [x / y - 1 for x, y in zip(a, b)]
        overheads.append(overhead)
        lines.append(
            f"| {cell['framework']} | {cell['mode']} | {cell['variant']} | "
            f"{statistics.median(m['first_step_s'] for m in ms):.3f} | {statistics.median(a):.1f} "
            f"({min(m['steady_step_us_min'] for m in ms):.1f}–"
            f"{max(m['steady_step_us_max'] for m in ms):.1f}) | "
            f"{statistics.median(b):.1f} ({min(o['steady_step_us_min'] for o in os_):.1f}–"
            f"{max(o['steady_step_us_max'] for o in os_):.1f}) | "
            f"{overhead:+.1%} ({min(per_round):+.1%}–{max(per_round):+.1%}) |"
        )
    if overheads:
        lines += ["", f"Median recording overhead across cells: {statistics.median(overheads):+.1%}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=2000, help="steps per repeat (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per cell process (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved recording/not pairs (default 2)")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/bench"), help="where the runs go (default runs/bench)"
    )
    parser.add_argument("--write", type=Path, help="replace the exponent section of this markdown file")
    args = parser.parse_args()
    on, off = [], []
    for i in range(args.rounds):  # interleaved: recording, not, recording, not, ...
        on.append(run_matrix(args.steps, args.repeats, True, args.out / f"recording-{i}"))
        off.append(run_matrix(args.steps, args.repeats, False, args.out / f"not-recording-{i}"))
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
