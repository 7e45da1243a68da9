"""Benchmark behind BENCHMARKS.md "GPT": every cell of spotdiff's gpt task next to a plain
nanoGPT-style script of the same framework (bench/reference/*_gpt.py), at the task's default sizes
(4 layers, 4 heads, width 128, context 128, 16 sequences per step).

    python bench/gpt_bench.py [--repeats 2] [--steps 30] [--threads T] [--write BENCHMARKS.md]

Each pair runs interleaved, one process at a time (spotdiff, reference, spotdiff, reference, ...),
both pinned by spotdiff.children's one pin function (same cores, same thread variables). Figures
per side: steady tokens/s (after the first 10 steps on both sides), MFU (nanoGPT's FLOPs per token
x tokens/s over the matmul peak the spotdiff cell measured with the same framework, precision and
device: one peak for both sides of a row), the first step (trace and compile included) and the
process's peak RSS. Median over `--repeats` processes (min–max); ratios are spotdiff / reference
ratios of medians (min–max of the pairwise ratios): above 1 spotdiff has more tokens/s, a slower
first step, more memory. Keras cells pair with the script of their backend (keras_gpt.py on
TensorFlow, run with the cell's KERAS_BACKEND; flax_gpt.py and torch_gpt.py for Keras on JAX and
PyTorch, the backend's own plain script). Keras' op-by-op `jax` mode is left out by default.
Time at the defaults on 2 CPU cores (estimated, not measured on an idle machine): processes of
15 s (eager, graph) to 50 s (torch.compile of a whole step), 20 processes per repeat, ~9 minutes
per repeat for all rows (`make bench-gpt`, 2 repeats: ~20 minutes); `make bench` runs the five
native rows and Keras on JAX once at 30 steps (~5 minutes). The steps barely matter (30 steps at
~0.2 s each); imports and compiles do. Check it works: `--repeats 1 --steps 12 --set n_layer=1
--set n_embd=32 --set block_size=32 --only torch-eager,keras-jax-jit`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from benchlib import machine, ratio, spotdiff_cell, spread, write_section

from spotdiff import children
from spotdiff.experiment import parse_set

HERE = Path(__file__).resolve().parent
PAIRS = [  # (framework, spotdiff mode, reference script, its flags, KERAS_BACKEND for the script)
    ("torch", "eager", "torch_gpt", [], None),
    ("torch", "compile", "torch_gpt", ["--compile"], None),
    ("tensorflow", "graph", "keras_gpt", [], "tensorflow"),
    ("tensorflow", "xla", "keras_gpt", ["--xla"], "tensorflow"),
    ("jax", "jit", "flax_gpt", [], None),
    ("keras", "tensorflow", "keras_gpt", [], "tensorflow"),
    ("keras", "tensorflow-jit", "keras_gpt", ["--xla"], "tensorflow"),
    ("keras", "jax-jit", "flax_gpt", [], None),
    ("keras", "torch", "torch_gpt", [], None),
    ("keras", "torch-jit", "torch_gpt", ["--compile"], None),
]
# spotdiff --set key -> the reference scripts' flag (gpt_common.add_arguments)
REFERENCE_FLAGS = {"batch_size": "--batch-size", "block_size": "--block-size", "n_layer": "--n-layer",
                   "n_head": "--n-head", "n_embd": "--n-embd", "lr": "--lr"}


def reference(script: str, flags: list[str], keras_backend: str | None, threads: int) -> dict:
    """The reference script as a pinned child (`python -m spotdiff.children SCRIPT`), like a cell."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    if keras_backend:
        env["KERAS_BACKEND"] = keras_backend
    child = children.start(script, flags, pin=children.Pin.first(threads), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=HERE / "reference")
    out, err = child.communicate()
    if child.returncode:
        raise RuntimeError(f"{script} {flags}: exit {child.returncode}\n{err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved pairs per row (default 2)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="cores (default all)")
    parser.add_argument("--steps", type=int, default=30, help="training steps, both sides (default 30)")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="a gpt size for both sides, key=value (n_layer, n_head, n_embd, block_size, "
                             "batch_size, lr; default: the task's defaults)")
    parser.add_argument("--only", help="comma-separated framework-mode rows (default all)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-gpt"), help="run folders")
    parser.add_argument("--write", type=Path, help="replace the gpt section of this markdown file")
    args = parser.parse_args()
    sizes = parse_set(args.sets)
    unknown = sorted(set(sizes) - set(REFERENCE_FLAGS))
    if unknown:
        parser.error(f"--set {unknown[0]}: the reference scripts take only {', '.join(REFERENCE_FLAGS)}")
    only = set(args.only.split(",")) if args.only else None
    # Both sides train `steps` steps and leave the first 10 out; spotdiff evaluates outside its clock.
    overrides = {**sizes, "steps": args.steps, "warmup_steps": 10, "eval_interval": max(args.steps // 3, 1),
                 "sample_tokens": 0}
    flags = ["--steps", str(args.steps)] + [a for k, v in sizes.items() for a in (REFERENCE_FLAGS[k], str(v))]
    rows = [
        "| framework | mode | spotdiff tokens/s | reference tokens/s | ratio | spotdiff MFU | "
        "reference MFU | spotdiff first step (s) | reference first step (s) | ratio | "
        "spotdiff peak RSS (MB) | reference peak RSS (MB) | ratio | reference script |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for framework, mode, script, script_flags, keras_backend in PAIRS:
        if only and f"{framework}-{mode}" not in only:
            continue
        ours, theirs = [], []
        for i in range(args.repeats):  # interleaved: A, B, A, B, ...
            ours.append(spotdiff_cell("gpt", framework, mode, args.threads,
                                      args.out / f"{framework}-{mode}-{i}", overrides=overrides))
            theirs.append(reference(script, script_flags + flags, keras_backend, args.threads))
        peak = [m["device_matmul_peak_gflops"] for m in ours]  # one peak per pair, both sides
        flops = ours[0]["flops_per_token"]
        tok_a, tok_b = [m["tokens_per_s"] for m in ours], [m["tokens_per_s"] for m in theirs]
        mfu_a = [t * flops / 1e9 / p for t, p in zip(tok_a, peak)]
        mfu_b = [t * flops / 1e9 / p for t, p in zip(tok_b, peak)]
        first_a, first_b = [m["first_step_s"] for m in ours], [m["first_step_s"] for m in theirs]
        rss_a, rss_b = [m["peak_rss_mb"] for m in ours], [m["peak_rss_mb"] for m in theirs]
        backend_note = [f"(KERAS_BACKEND={keras_backend})"] if framework == "keras" and keras_backend else []
        script_text = " ".join([f"{script}.py", *script_flags, *backend_note])
        rows.append(
            f"| {framework} | {mode} | {spread(tok_a)} | {spread(tok_b)} | {ratio(tok_a, tok_b)} | "
            f"{spread(mfu_a, '.1%')} | {spread(mfu_b, '.1%')} | {spread(first_a, '.2f')} | "
            f"{spread(first_b, '.2f')} | {ratio(first_a, first_b)} | {spread(rss_a)} | {spread(rss_b)} | "
            f"{ratio(rss_a, rss_b)} | {script_text} |"
        )
        print(rows[-1], flush=True)
    size = ", ".join(f"{k} {v}" for k, v in sizes.items()) or "the task's default sizes"
    what = f"gpt at {size}, {args.steps} steps (steady: steps 11-{args.steps}), fp32"
    text = "\n".join([machine(args.threads, args.repeats, what), ""] + rows)
    print(text)
    if args.write:
        write_section(args.write, "gpt-bench", text, "## GPT (CPU)")


if __name__ == "__main__":
    main()
