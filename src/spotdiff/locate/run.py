"""`spotdiff where`, parent side: record in one child per framework, compare, confirm causes.

Round 1 records every framework as it is; if a pair diverges, round 2 reruns every framework once
per candidate cause with that one difference aligned (all candidates in one child per framework).
A cause is confirmed only when its rerun removes the divergence. Children are started through
`spotdiff.children`, side by side, each pinned to its own core where there are enough.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spotdiff import children
from spotdiff.locate import compare, verdict
from spotdiff.locate.causes import Cause, candidates

CHILD_MODULE = "spotdiff.locate.child"
BASE = "base"
ALL_CANDIDATES = "align-all"  # every candidate aligned at once, judged when none alone confirms


@dataclass
class Request:
    """One `where` comparison: what every child records."""

    task: str
    frameworks: list[str]
    modes: dict[str, str]  # framework -> the mode it records in
    variant: str
    steps: int
    overrides: dict[str, Any]
    seed: int = 0
    timeout_s: float = 900.0
    task_source: dict[str, str] | None = None
    threads: int = 1
    child_module: str = CHILD_MODULE
    tfdbg_root: str | None = None  # --tfdbg: the TensorFlow recorder's base run dumps tfdbg v2 here
    costs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def shared_compile_cache(recorders: Path) -> dict[str, str]:
    """The environment that lets every recorder of one command share JAX's persistent compilation
    cache, in `recorders`/jax-compile-cache: a cause rerun records the same model with one setting
    changed, so it loads most of what the first round compiled (Flax op by op: every primitive)
    instead of compiling it again. Recorders time nothing, and a cached executable is the one that
    was compiled, so the tensors are the same. A cache the user set (JAX_COMPILATION_CACHE_DIR) wins."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return {}
    return {"JAX_COMPILATION_CACHE_DIR": str(recorders / "jax-compile-cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # JAX's default keeps compiles >= 1 s only


def launch(module: str, payload: dict[str, Any], out: Path, index: int, threads: int = 1) -> tuple:
    """Start one recorder child `python -m MODULE out/request.json out` (pinned, stderr to
    out/stderr.log; `out` is RECORDERS/ROUND/NAME, and every recorder under RECORDERS shares one
    compilation cache); (child, out, start time) for `collect`."""
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "request.json"
    spec_path.write_text(json.dumps(payload))
    (out / "answer.json").unlink(missing_ok=True)
    with open(out / "stderr.log", "wb") as err:
        child = children.start(module, [spec_path, out], pin=children.Pin.first(threads, index),
                               env=shared_compile_cache(out.parent.parent),
                               stdout=subprocess.DEVNULL, stderr=err)
    return child, out, time.perf_counter()


def collect(started: dict[str, tuple], timeout_s: float, costs: dict[str, list[dict[str, Any]]],
            runs: int) -> dict[str, dict[str, Any]]:
    """Wait for every launched recorder (one deadline for all); name -> its answer, with why it
    failed when it did, its wall time and folder; the cost of each is added to `costs`."""
    deadline, answers = time.monotonic() + timeout_s, {}
    for name, (child, out, began) in started.items():
        timed_out = children.watch(child, timeout_s=max(0.0, deadline - time.monotonic()))
        wall_s = time.perf_counter() - began
        try:
            answer = json.loads((out / "answer.json").read_text())
        except (OSError, ValueError):
            answer = {"status": "failed"}
        reason = children.death_reason(child.returncode, timed_out, timeout_s, what="recorder")
        if answer.get("status") != "done":
            tail = children.stderr_tail(out / "stderr.log", 3).strip().splitlines()
            answer.setdefault("error", reason or (tail[-1] if tail else "no answer"))
        answer["wall_s"] = wall_s
        answer["dir"] = str(out)
        costs.setdefault(name, []).append(
            {"runs": runs, "wall_s": wall_s, "peak_rss_mb": answer.get("peak_rss_mb"),
             "import_s": answer.get("import_s"),
             "record_s": sum(r.get("record_s", 0.0) for r in answer.get("runs", {}).values())})
        answers[name] = answer
    return answers


def record(request: Request, runs: list[dict[str, Any]], work_dir: Path,
           tfdbg: str | None = None) -> dict[str, dict[str, Any]]:
    """One child per framework records `runs`; framework -> its answer (status, runs, cost).
    `tfdbg`: the folder the tensorflow child dumps tfdbg v2 into while it records."""
    started = {}
    for index, name in enumerate(request.frameworks):
        payload = {"task": request.task, "task_source": request.task_source, "framework": name,
                   "mode": request.modes[name], "variant": request.variant, "overrides": request.overrides,
                   "seed": request.seed, "steps": request.steps, "runs": runs,
                   "tfdbg": tfdbg if name == "tensorflow" else None}
        started[name] = launch(request.child_module, payload, work_dir / name, index, request.threads)
    return collect(started, request.timeout_s, request.costs, len(runs))


def _tensors(answer: dict[str, Any], run: str) -> dict[str, dict[str, np.ndarray]] | None:
    """{"float32": {...}, "float64": {...}} of one run, or None when either was not recorded."""
    got = {}
    for dtype in ("float32", "float64"):
        info = answer.get("runs", {}).get(f"{run}-{dtype}", {})
        if info.get("status") != "ok":
            return None
        with np.load(Path(answer["dir"]) / f"{run}-{dtype}.npz") as npz:
            got[dtype] = {k: npz[k] for k in npz.files}
    return got


def _run_error(answer: dict[str, Any], run: str) -> str:
    if answer.get("status") != "done":
        return answer.get("error") or "recorder failed"
    for dtype in ("float32", "float64"):
        info = answer.get("runs", {}).get(f"{run}-{dtype}", {})
        if info.get("status") != "ok":
            return f"{dtype}: {info.get('error', 'not recorded')}"
    return ""


def analyse(answers: dict[str, dict[str, Any]], run: str, steps: int) -> dict[str, Any]:
    """Every pair of frameworks compared for one run: rows, verdicts, first divergence, odd one out."""
    recorded, failures = {}, {}
    for name, answer in answers.items():
        tensors = _tensors(answer, run) if answer.get("status") == "done" else None
        if tensors is None:
            failures[name] = _run_error(answer, run)
        else:
            recorded[name] = tensors
    names = list(recorded)
    meta = next((answers[n]["runs"][f"{run}-float32"] for n in names), {})
    order = compare.entries(meta.get("layers", []), meta.get("params", []), steps, meta.get("buffers", []))
    result: dict[str, Any] = {"run": run, "failures": failures, "pairs": {}, "order": [e.key for e in order],
                              "aligned_by": {n: answers[n]["runs"][f"{run}-float32"].get("aligned", [])
                                             for n in names}}
    rows_of = {}
    for a, b in verdict.pairs(names):
        rows = compare.compare_pair(order, recorded[a], recorded[b])
        rows_of[(a, b)] = rows
        result["pairs"][f"{a}|{b}"] = {**verdict.pair_verdict(rows), "rows": [r.to_json() for r in rows]}
    statuses = {pair: result["pairs"][f"{pair[0]}|{pair[1]}"]["status"] for pair in rows_of}
    result["status"] = _overall(statuses, len(names))
    result["odd_one_out"] = verdict.odd_one_out(statuses)
    diverging = [(p, result["pairs"][f"{p[0]}|{p[1]}"]["first"])
                 for p, s in statuses.items() if s == "diverges"]
    if diverging:
        pair, first = min(diverging, key=lambda item: (item[1], -rows_of[item[0]][item[1]].ratio))
        index, rate = verdict.introduced(rows_of[pair], first)
        result["first"] = {"pair": list(pair), "row": rows_of[pair][first].to_json(),
                           "introduced": rows_of[pair][index].to_json(), "growth_rate": rate,
                           "pairs_at_first": sorted(f"{p[0]}|{p[1]}" for p, f in diverging if f == first),
                           "optimizer": meta.get("optimizer"),
                           "layer_before": _layer_before(meta.get("layers", []), rows_of[pair][index].name)}
    ratios = [v["max_ratio"] for v in result["pairs"].values() if v["max_ratio"] is not None]
    result["max_ratio"] = max(ratios, default=None)
    return result


def _layer_before(layers: list[list[str]], name: str) -> list[str] | None:
    names = [layer[0] for layer in layers]
    if name in names and names.index(name) > 0:
        return list(layers[names.index(name) - 1])
    return None


def _overall(statuses: dict[tuple[str, str], str], recorded: int) -> str:
    if recorded < 2:
        return "no verdict"
    values = set(statuses.values())
    if "diverges" in values:
        return "diverges"
    return "no divergence" if values == {"no divergence"} else "no verdict"


def ratio_at(result: dict[str, Any], key: str, pairs: list[str]) -> float | None:
    """The largest ratio at tensor `key` over `pairs` (None where any has no ratio)."""
    found = []
    for pair in pairs:
        rows = result["pairs"].get(pair, {}).get("rows", [])
        row = next((r for r in rows if r["key"] == key), None)
        if row is None or row["ratio"] is None:
            return None
        found.append(row["ratio"])
    return max(found, default=None)


def candidate_causes(base: dict[str, Any]) -> list[Cause]:
    first = base["first"]
    kinds = {first["introduced"]["kind"], first["row"]["kind"]}
    if first["layer_before"]:
        kinds.add(first["layer_before"][1])
    return candidates(kinds, first["optimizer"], first["introduced"]["phase"])


def combined(causes: list[Cause]) -> Cause:
    """Several causes as one: every alignment at once (named only if that rerun confirms it)."""
    return Cause(key="+".join(c.key for c in causes),
                 value={k: v for c in causes for k, v in c.align.items()},
                 label=" + ".join(c.label for c in causes),
                 what_differs="; ".join(f"{c.label}: {c.what_differs}" for c in causes),
                 component=",".join(dict.fromkeys(c.component for c in causes if c.component)))


def confirm(base: dict[str, Any], cause: Cause, rerun: dict[str, Any]) -> dict[str, Any]:
    """What aligning `cause` did: removed the divergence (confirmed), removed the first one only
    (partly), or not; with the ratio at the first divergence and the largest ratio, before/after."""
    first = base["first"]
    key, pairs = first["row"]["key"], first["pairs_at_first"]
    after_first = ratio_at(rerun, key, pairs)
    honoured = sorted(n for n, keys in rerun.get("aligned_by", {}).items() if set(cause.align) & set(keys))
    if rerun["status"] == "no divergence":
        outcome = "confirmed"
    elif rerun["status"] == "diverges" and after_first is not None and after_first <= compare.THRESHOLD:
        outcome = "partly"  # the first divergence is gone, another remains
    else:
        outcome = "not confirmed"
    if not honoured:
        outcome = "not testable"  # no framework could align it: the rerun is the same run
    return {"cause": cause.label, "key": cause.key, "align": cause.align, "what_differs": cause.what_differs,
            "component": cause.component, "aligned_by": honoured, "outcome": outcome,
            "ratio_at_first_before": first["row"]["ratio"], "ratio_at_first_after": after_first,
            "max_ratio_before": base["max_ratio"], "max_ratio_after": rerun["max_ratio"],
            "status_after": rerun["status"], "first_after": (rerun.get("first") or {}).get("row")}


def where(request: Request, work_dir: Path) -> dict[str, Any]:
    """The whole analysis: base comparison, candidate causes rerun and judged, recording cost."""
    began = time.perf_counter()
    answers = record(request, [{"name": BASE, "align": {}}], work_dir / "record", tfdbg=request.tfdbg_root)
    base = analyse(answers, BASE, request.steps)
    result: dict[str, Any] = {"task": request.task, "frameworks": request.frameworks,
                              "modes": request.modes, "variant": request.variant, "steps": request.steps,
                              "overrides": request.overrides, "seed": request.seed,
                              "threshold": compare.THRESHOLD, "floor_ulps": compare.FLOOR_ULPS,
                              "versions": {n: a.get("versions", {}) for n, a in answers.items()},
                              "base": base, "causes": [], "cause": None, "tfdbg": request.tfdbg_root}
    if base["status"] == "diverges":
        causes = candidate_causes(base)
        if causes:
            runs = [{"name": f"align-{c.key}", "align": c.align} for c in causes]
            if len(causes) > 1:  # two differences at once: no single alignment removes them
                runs.append({"name": ALL_CANDIDATES, "align": combined(causes).align})
            reruns = record(request, runs, work_dir / "causes")
            analysed = {}
            for cause, run in zip(causes, runs):
                analysed[cause.key] = analyse(reruns, run["name"], request.steps)
                judged = confirm(base, cause, analysed[cause.key])
                result["causes"].append(judged)
            confirmed = [c for c in result["causes"] if c["outcome"] in ("confirmed", "partly")]
            result["cause"] = confirmed[0] if confirmed else None
            if result["cause"] is None and len(causes) > 1:
                # a candidate whose own rerun reproduced the base run exactly changed nothing here
                acting = [c for c, judged in zip(causes, result["causes"])
                          if (judged["max_ratio_after"], judged["ratio_at_first_after"])
                          != (base["max_ratio"], base["first"]["row"]["ratio"])] or causes
                together = combined(acting)
                judged = confirm(base, together, analyse(reruns, ALL_CANDIDATES, request.steps))
                judged["combined"] = [c.label for c in acting]
                result["causes"].append(judged)
                result["cause"] = judged if judged["outcome"] == "confirmed" else None
            if result["cause"] is not None and result["cause"]["outcome"] == "partly":
                result["chain"] = follow_chain(request, work_dir, result, analysed[result["cause"]["key"]])
    result["cost"] = {"total_s": time.perf_counter() - began, "per_framework": request.costs}
    return result


MAX_CHAIN = 4  # causes named one after another at most (each one more round of recorders)


def follow_chain(request: Request, work_dir: Path, result: dict[str, Any],
                 after: dict[str, Any]) -> list[dict]:
    """Several documented differences in one run (e.g. LayerNorm epsilon, then GELU): the cause that
    removed the first divergence stays aligned, and the candidates of the divergence that remains
    are rerun on top of it, until a rerun shows no divergence or nothing applies. The chain of
    causes, each judged against the run before it (`with`: what was already aligned); every rerun
    is added to result["causes"]."""
    chain = [result["cause"]]
    aligned = dict(result["cause"]["align"])
    for round_ in range(2, MAX_CHAIN + 1):
        causes = [c for c in candidate_causes(after) if not set(c.align) <= set(aligned)]
        if not causes:
            break
        runs = [{"name": f"align-{c.key}-on-{'+'.join(aligned)}", "align": {**aligned, **c.align}}
                for c in causes]
        reruns = record(request, runs, work_dir / f"causes-{round_}")
        judged = []
        for cause, run in zip(causes, runs):
            rerun = analyse(reruns, run["name"], request.steps)
            judged.append(({**confirm(after, cause, rerun), "with": sorted(aligned)}, rerun))
            result["causes"].append(judged[-1][0])
        best = (next((j for j in judged if j[0]["outcome"] == "confirmed"), None)
                or next((j for j in judged if j[0]["outcome"] == "partly"), None))
        if best is None:
            break
        chain.append(best[0])
        aligned.update(best[0]["align"])
        if best[0]["outcome"] == "confirmed":
            break
        after = best[1]
    return chain
