"""Benchmark behind BENCHMARKS.md "Keras-on-X vs X": what the Keras 3 abstraction costs on each
backend, for the exponent (manual and optimizer variants) and digits tasks.

    python bench/keras_bench.py [--repeats 2] [--steps 1000] [--epochs 5] [--write BENCHMARKS.md]

Every Keras mode the framework registry declares (spotdiff.frameworks: `runs_on` the backend,
`counterparts` the backend's own modes that execute the same way) runs interleaved with the
matching native cell of each task (the first counterpart that task has): Keras, native, Keras,
native, ... one process at a time, each pinned by spotdiff.children. Reported: the time ratio
Keras / native (µs per step, or seconds per image from steady images/s; above 1: Keras slower)
and the peak RSS ratio, each a ratio of medians with the min–max of the pairwise ratios.
Time: about 6 s per exponent process and 12 s per digits process on 2 cores; 12 exponent and 5
digits rows x 2 sides x 2 repeats = 72 processes, ~10 minutes.
Check it works: `--repeats 1 --steps 200 --epochs 2 --only exponent`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchlib import machine, ratio, spotdiff_cell, spread, write_section

from spotdiff.frameworks import FRAMEWORKS
from spotdiff.tasks import get_spec

TASKS = ("exponent", "digits")


def pairs(task: str) -> list[tuple[str, str, str, str]]:
    """(keras mode, backend, backend's mode, variant) for every Keras mode the registry declares
    whose backend runs `task` in one of its counterpart modes."""
    spec = get_spec(task)
    found = []
    for mode in FRAMEWORKS["keras"].modes:
        native = next((m for m in mode.counterparts if m in spec.modes.get(mode.runs_on, ())), None)
        if native is None or mode.name not in spec.modes.get("keras", ()):
            continue
        found += [(mode.name, mode.runs_on, native, variant) for variant in spec.variants]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2, help="interleaved pairs per row (default 2)")
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="cores (default all)"
    )
    parser.add_argument("--steps", type=int, default=1000, help="exponent steps (default 1000)")
    parser.add_argument("--epochs", type=int, default=5, help="digits epochs (default 5)")
    parser.add_argument("--only", choices=TASKS, help="one task (default both)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-keras"), help="run folders")
    parser.add_argument("--write", type=Path, help="replace the keras-bench section of this markdown file")
    args = parser.parse_args()
    overrides = {"exponent": {"steps": args.steps}, "digits": {"epochs": args.epochs, "parity_probe": False}}
    # exponent: µs per step; digits: µs per image (from steady images/s); both lower is faster.
    speed = {"exponent": lambda m: m["steady_step_us"], "digits": lambda m: 1e6 / m["steady_images_per_s"]}
    unit = {"exponent": "µs/step", "digits": "µs/image"}
    rows = [
        "| task | variant | Keras mode | native | Keras time | native time | time ratio Keras / native | "
        "Keras peak RSS (MB) | native peak RSS (MB) | RSS ratio |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for task in [args.only] if args.only else TASKS:
        for keras_mode, backend, native, variant in pairs(task):
            ours, theirs = [], []
            for i in range(args.repeats):  # interleaved: Keras, native, Keras, native, ...
                for side, framework, mode in ((ours, "keras", keras_mode), (theirs, backend, native)):
                    side.append(
                        spotdiff_cell(
                            task,
                            framework,
                            mode,
                            args.threads,
                            args.out / f"{task}-{variant}-{framework}-{mode}-{i}",
                            variant=variant,
                            overrides=overrides[task],
                        )
                    )
            a, b = [speed[task](m) for m in ours], [speed[task](m) for m in theirs]
            ra, rb = [m["peak_rss_mb"] for m in ours], [m["peak_rss_mb"] for m in theirs]
            rows.append(
                f"| {task} | {variant} | keras {keras_mode} | {backend} {native} | "
                f"{spread(a, ',.1f')} {unit[task]} | {spread(b, ',.1f')} {unit[task]} | {ratio(a, b)} | "
                f"{spread(ra)} | {spread(rb)} | {ratio(ra, rb)} |"
            )
            print(rows[-1], flush=True)
    what = f"exponent {args.steps} steps, digits {args.epochs} epochs (steady: epochs 2-{args.epochs})"
    text = "\n".join([machine(args.threads, args.repeats, what), ""] + rows)
    print(text)
    if args.write:
        write_section(args.write, "keras-bench", text, "## Keras-on-X vs X (CPU)")


if __name__ == "__main__":
    main()
