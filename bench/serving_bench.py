"""Benchmark behind BENCHMARKS.md "serving": `spotdiff loadtest` at realistic bounds on a freshly
trained and exported digit CNN (every framework and format), with the Flask baseline beside it.

    python bench/serving_bench.py [--requests 2000] [--duration 10] [--write BENCHMARKS.md]

Trains one digits epoch per framework, exports every format, then load-tests every servable model
over REST (TF Serving v1, KServe v2), gRPC (both) and the Flask baseline at 1, 4 and 16 clients.
Servers and load generator are pinned to separate halves of the CPUs; run it on an otherwise idle
machine: the figures are only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

from spotdiff.experiment import build_experiment
from spotdiff.orchestrate import run_experiment
from spotdiff.serve.export import ALL_FORMATS, run_export
from spotdiff.serve.loadtest import run_loadtest

BEGIN, END = "<!-- serving-bench:begin -->", "<!-- serving-bench:end -->"
PROTOCOL_ORDER = ("rest-tfserving", "rest-kserve", "grpc-tfserving", "grpc-kserve", "flask")


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"


def markdown(results: dict) -> str:
    """The serving section: machine and versions, the load table, Flask ratios, overheads, mobile."""
    env, serving = results["environment"], results["serving"]
    versions = ", ".join(f"{k} {v}" for k, v in env["frameworks"].items() if v)
    packages = ", ".join(f"{k} {v}" for k, v in env["serving_packages"].items() if v)
    bounds = serving["bounds"]
    lines = [
        (
            f"Machine: {env['cpu_model']}, {env['cpu_cores']} cores "
            f"(servers on CPUs {serving['cpus']['servers']}, load generator on {serving['cpus']['client']}); "
            f"Python {platform.python_version()}; {versions}; {packages}. "
            f"Each measurement: at most {bounds['requests']} requests or {bounds['duration_s']} s, "
            f"one image per request, "
            f"closed loop on 127.0.0.1. Baseline: {serving['flask_server']}. Both servers: "
            f"{serving['process_tuning']['flask']}, on the same CPUs. Status: {results['status']} "
            f"(failed requests are left out of req/s and the percentiles)."
        ),
        "",
        "| model | framework | format | protocol | clients | req/s | p50 ms | p90 ms | p99 ms | failed |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = sorted(
        serving["rows"], key=lambda r: (r["model"], PROTOCOL_ORDER.index(r["protocol"]), r["concurrency"])
    )
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['framework']} | {r['format']} | {r['protocol']} | {r['concurrency']} | "
            f"{_fmt(r['throughput_rps'])} | {_fmt(r['p50_ms'])} | {_fmt(r['p90_ms'])} | "
            f"{_fmt(r['p99_ms'])} | "
            f"{r['failed']} |"
        )
    lines += [
        "",
        "spotdiff REST (TF Serving v1 `:predict`) against the Flask baseline, same model, same payload:",
        "",
        "| model | clients | throughput ratio | p99 ms | Flask p99 ms | p99 ratio | throughput ≥ Flask | "
        "p99 < Flask |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in sorted(serving["flask_ratio"], key=lambda r: (r["model"], r["concurrency"])):
        lines.append(
            f"| {r['model']} | {r['concurrency']} | {_fmt(r['throughput_ratio'])} | {_fmt(r['p99_ms'])} | "
            f"{_fmt(r['flask_p99_ms'])} | {_fmt(r['p99_ratio'])} | "
            f"{'yes' if r['throughput_at_least_flask'] else 'no'} | "
            f"{'yes' if r['p99_lower_than_flask'] else 'no'} |"
        )
    lines += [
        "",
        "REST p50 at one client against an in-process `predict` of one image (the server's own loaders):",
        "",
        "| model | REST p50 ms | in-process p50 ms | overhead ms | under 1 ms |",
        "|---|---:|---:|---:|---|",
    ]
    for o in serving["rest_overhead"]:
        lines.append(
            f"| {o['model']} | {_fmt(o['rest_p50_ms'])} | {_fmt(o['in_process_p50_ms'])} | "
            f"{_fmt(o['overhead_ms'])} | {'yes' if o['under_1ms'] else 'no'} |"
        )
    if serving["mobile"]:
        lines += [
            "",
            "| mobile model | runtime | file KB | p50 ms (1 image, 1 thread) |",
            "|---|---|---:|---:|",
        ]
        for m in serving["mobile"]:
            lines.append(
                f"| {m['model']} | {m['runtime']} | {m['size_bytes'] / 1024:,.0f} | {_fmt(m['p50_ms'])} |"
            )
    for failure in serving["failures"]:
        lines.append(f"\nFailed: {failure}")
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN not in doc:
        doc += (
            "\n## serving (CPU)\n\n"
            f"`python bench/serving_bench.py --write BENCHMARKS.md` (`make bench-serving`): "
            f"`spotdiff loadtest` of every exported digit model; see docs/serving.md.\n\n{BEGIN}\n{END}\n"
        )
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests per measurement, at most (default 2000)"
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per measurement, at most (default 10)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/bench-serving"),
        help="work folder (default runs/bench-serving)",
    )
    parser.add_argument("--write", type=Path, help="replace the serving section of this markdown file")
    args = parser.parse_args()
    exp = build_experiment(
        {
            "tasks": ["digits"],
            "threads": 1,
            "device": "cpu",
            "repeats": 1,
            "modes": ["eager", "fit", "jit"],
            "overrides": {"epochs": 1, "parity_probe": False},
        }
    )
    _, run_dir = run_experiment(exp, args.out / "run", index=False, render=False, overwrite=True)
    exported = run_export(run_dir, run_dir / "models", list(ALL_FORMATS))
    if exported["failures"]:
        print(f"export failures: {exported['failures']}")
    for row in exported["artefacts"]:
        if row.get("compile_s") is not None:  # AOTInductor: the C++ compile is most of the export
            print(f"{row['name']}: export {row['export_s']:.1f} s, of which compile {row['compile_s']:.1f} s")
    results, folder = run_loadtest(
        run_dir, args.out / "loadtest", requests=args.requests, duration_s=args.duration
    )
    text = markdown(results)
    print(text)
    print(f"\nresults: {folder / 'results.json'}")
    if args.write:
        write_section(args.write, text)


if __name__ == "__main__":
    main()
