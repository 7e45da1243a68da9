"""Benchmark behind BENCHMARKS.md "digits": spotdiff's steady images/s next to plain scripts
written the way each framework's own MNIST example is written (bench/reference/).

    python bench/digits_bench.py [--repeats 3] [--threads T] [--write BENCHMARKS.md]

Everything runs one process at a time with the same cores and thread settings; each figure is
the median over `--repeats` processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from spotdiff.experiment import build_experiment
from spotdiff.orchestrate import run_experiment
from spotdiff.worker import THREAD_ENV_VARS

HERE = Path(__file__).resolve().parent
PAIRS = [  # (framework, spotdiff mode, reference script, its flags)
    ("torch", "eager", "torch_mnist.py", []),
    ("torch", "compile", "torch_mnist.py", ["--compile"]),
    ("tensorflow", "fit", "keras_mnist.py", []),
    ("tensorflow", "xla", "keras_mnist.py", ["--jit-compile"]),
    ("jax", "jit", "flax_mnist.py", []),
]


def reference(script: str, flags: list[str], threads: int) -> dict:
    env = {**os.environ, **{name: str(threads) for name in THREAD_ENV_VARS}, "TF_CPP_MIN_LOG_LEVEL": "2",
           "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    cores = sorted(os.sched_getaffinity(0))[:threads]
    out = subprocess.run([sys.executable, str(HERE / "reference" / script), *flags], capture_output=True, text=True,
                         env=env, cwd=HERE / "reference", preexec_fn=lambda: os.sched_setaffinity(0, cores), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def spotdiff_cell(framework: str, mode: str, threads: int, out: Path) -> dict:
    exp = build_experiment({"tasks": ["digits"], "frameworks": [framework], "modes": [mode], "threads": threads,
                            "device": "cpu", "overrides": {"parity_probe": False}})
    results, _ = run_experiment(exp, out, index=False, render=False, overwrite=True)
    (cell,) = results["cells"]
    if cell["status"] != "ok":
        raise RuntimeError(f"{framework}-{mode}: {cell['error']}")
    return cell["metrics"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="processes per figure (default 3)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="cores (default all)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-digits"), help="run folders (default runs/bench-digits)")
    parser.add_argument("--write", type=Path, help="replace the digits section of this markdown file")
    args = parser.parse_args()
    rows = ["| framework | mode | spotdiff images/s | reference images/s | ratio | reference script |",
            "|---|---|---:|---:|---:|---|"]
    for framework, mode, script, flags in PAIRS:
        ours = [spotdiff_cell(framework, mode, args.threads, args.out / f"{framework}-{mode}-{i}")["steady_images_per_s"]
                for i in range(args.repeats)]
        theirs = [reference(script, flags, args.threads)["steady_images_per_s"] for _ in range(args.repeats)]
        a, b = statistics.median(ours), statistics.median(theirs)
        rows.append(f"| {framework} | {mode} | {a:,.0f} ({min(ours):,.0f}–{max(ours):,.0f}) | "
                    f"{b:,.0f} ({min(theirs):,.0f}–{max(theirs):,.0f}) | {a / b:.2f} | {script} {' '.join(flags)} |")
        print(rows[-1], flush=True)
    import platform

    from spotdiff.record.environment import collect

    env = collect(args.threads, "cpu")
    versions = ", ".join(f"{k} {v}" for k, v in env["frameworks"].items() if v)
    text = "\n".join([f"Machine: {env['cpu_model']}, {env['cpu_cores']} cores, threads {args.threads}; "
                      f"Python {platform.python_version()}; {versions}. Median of {args.repeats} processes (min–max).", ""] + rows)
    print(text)
    if args.write:
        begin, end = "<!-- digits-bench:begin -->", "<!-- digits-bench:end -->"
        doc = args.write.read_text()
        if begin not in doc:
            doc += f"\n## digits (CPU)\n\n{begin}\n{end}\n"
        head, _, rest = doc.partition(begin)
        _, _, tail = rest.partition(end)
        args.write.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


if __name__ == "__main__":
    main()
