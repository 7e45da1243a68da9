"""Benchmark behind BENCHMARKS.md "digits": spotdiff's steady images/s (end to end and compute
only, with the share of the epoch spent waiting for input) next to plain scripts written the way
each framework's own MNIST example is written (bench/reference/).

    python bench/digits_bench.py [--repeats 2] [--threads T] [--epochs 10] [--write BENCHMARKS.md]

Each pair runs interleaved, one process at a time (spotdiff, reference, spotdiff, reference, ...),
both pinned by spotdiff.children's one pin function (same cores, same thread variables). Figures:
median over `--repeats` processes (min–max); the ratio is a ratio of medians (min–max of the
pairwise ratios). JAX runs both step styles: `jit` (the nnx.jit step called directly, as Flax's
tutorial and the reference do) and `jit-cached` (through nnx.cached_partial).
Time: about 15 s per process on 2 cores; 6 pairs x 2 sides x 2 repeats = 24 processes, ~7 minutes.
Check it works: `--repeats 1 --epochs 2`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from benchlib import machine, ratio, spotdiff_cell, spread, write_section

from spotdiff import children

HERE = Path(__file__).resolve().parent
PAIRS = [  # (framework, spotdiff mode, reference script, its flags)
    ("torch", "eager", "torch_mnist", []),
    ("torch", "compile", "torch_mnist", ["--compile"]),
    ("tensorflow", "fit", "keras_mnist", []),
    ("tensorflow", "xla", "keras_mnist", ["--jit-compile"]),
    ("jax", "jit", "flax_mnist", []),
    ("jax", "jit-cached", "flax_mnist", []),
]


def reference(script: str, flags: list[str], threads: int, epochs: int) -> dict:
    """The reference script as a pinned child (`python -m spotdiff.children SCRIPT`), like a cell."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    child = children.start(
        script,
        [*flags, "--epochs", str(epochs)],
        pin=children.Pin.first(threads),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=HERE / "reference",
    )
    out, err = child.communicate()
    if child.returncode:
        raise RuntimeError(f"{script} {flags}: exit {child.returncode}\n{err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2, help="interleaved pairs per row (default 2)")
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="cores (default all)"
    )
    parser.add_argument("--epochs", type=int, default=10, help="epochs, both sides (default 10)")
    parser.add_argument("--only", help="comma-separated framework-mode rows (default all)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-digits"), help="run folders")
    parser.add_argument("--write", type=Path, help="replace the digits section of this markdown file")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    rows = [
        "| framework | mode | spotdiff images/s | compute-only images/s | input share of epoch | "
        "reference images/s | ratio (spotdiff / reference) | reference script |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    overrides = {"parity_probe": False, "epochs": args.epochs}
    for framework, mode, script, flags in PAIRS:
        if only and f"{framework}-{mode}" not in only:
            continue
        ours, theirs = [], []
        for i in range(args.repeats):  # interleaved: A, B, A, B, ...
            ours.append(
                spotdiff_cell(
                    "digits",
                    framework,
                    mode,
                    args.threads,
                    args.out / f"{framework}-{mode}-{i}",
                    overrides=overrides,
                )
            )
            theirs.append(reference(script, flags, args.threads, args.epochs)["steady_images_per_s"])
        e2e = [m["steady_images_per_s"] for m in ours]
        compute = [m["compute_images_per_s"] for m in ours]
        share = [m["input_fraction"] for m in ours]
        rows.append(
            f"| {framework} | {mode} | {spread(e2e)} | {spread(compute)} | {spread(share, '.1%')} | "
            f"{spread(theirs)} | {ratio(e2e, theirs)} | {script}.py {' '.join(flags)} |"
        )
        print(rows[-1], flush=True)
    text = "\n".join(
        [machine(args.threads, args.repeats, f"Epochs 2-{args.epochs} (steady), parity probe off"), ""] + rows
    )
    print(text)
    if args.write:
        write_section(args.write, "digits-bench", text, "## digits (CPU)")


if __name__ == "__main__":
    main()
