"""`spotdiff port`, parent side: the source's child exports its layers, weights and inputs; each
target's child loads them and records; `locate` compares, finds where, and confirms causes.

Round 1 records the source; round 2 every target (side by side) from the source's weights;
round 3, when a pair diverges, reruns the TARGETS once per candidate cause with that one setting
copied from the source's layer (the source is what the port must match, so its round-1 records
stand for every rerun). A cause is named only when its rerun removes the divergence, as in
`spotdiff where` (`locate.run.confirm`). No framework is imported here.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotdiff import children
from spotdiff.errors import UserError
from spotdiff.locate import compare
from spotdiff.locate.run import BASE, analyse, candidate_causes, collect, confirm, launch
from spotdiff.port.child import READY
from spotdiff.port.matching import Pair, write_map
from spotdiff.port.specs import InputSpec, ModelSpec

CHILD_MODULE = "spotdiff.port.child"
SOURCE_VALUE = "as in the source"  # what a port alignment sets: the source layer's own value
RUNNING_VAR_NOTE = (
    "BatchNorm running variance: PyTorch updates it with the unbiased batch variance, "
    "Keras and Flax with the biased one, and none can be set otherwise; the PyTorch "
    "recording uses the biased one so the two can be compared"
)


class PortBadInput(UserError):
    """A child found the user's input unusable (its traceback is kept in its folder)."""


class PortFailed(RuntimeError):
    """The source's recorder failed for a reason that is not the user's input: nothing to compare."""


@dataclass
class PortRequest:
    """One `spotdiff port` comparison."""

    source: ModelSpec
    targets: list[ModelSpec]
    inputs: list[InputSpec]
    layout: str = "auto"
    steps: int = 2
    optimizer: dict[str, Any] = field(default_factory=dict)
    pinned: dict[str, tuple[str, str]] | None = None
    seed: int = 0
    timeout_s: float = 900.0
    threads: int = 1
    costs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """A label per model (the framework, numbered when two share it): source first."""
        found: list[str] = []
        for spec in [self.source, *self.targets]:
            label, number = spec.label, 2
            while label in found:
                label, number = f"{spec.label}-{number}", number + 1
            found.append(label)
        return found


def _payload(
    request: PortRequest, spec: ModelSpec, role: str, source_dir: Path | None, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    mixed = len({s.framework for s in [request.source, *request.targets]}) > 1
    optimizer = dict(request.optimizer)
    if mixed and spec.framework == "torch":
        optimizer["bn_running_var"] = "biased"
    return {
        "model": spec.to_json(),
        "role": role,
        "source_dir": str(source_dir) if source_dir else None,
        "inputs": [i.to_json() for i in request.inputs],
        "layout": request.layout,
        "steps": request.steps,
        "optimizer": optimizer,
        "map": request.pinned,
        "runs": runs,
        "seed": request.seed,
    }


def _check(answers: dict[str, dict[str, Any]]) -> None:
    """Bad input in any child: one line, its traceback kept in its folder."""
    for answer in answers.values():
        if answer.get("status") == "bad input":
            where = Path(answer["dir"]) / "answer.json"
            raise PortBadInput(f"{answer['error']} (traceback: {where})")


def _start(request: PortRequest, models: dict[str, tuple[ModelSpec, str]], source_dir: Path | None,
           runs: list[dict[str, Any]], work_dir: Path, first_index: int = 0) -> dict[str, tuple]:
    """One recorder child per model, pinned side by side: name -> what `collect` waits for."""
    return {name: launch(CHILD_MODULE, _payload(request, spec, role, source_dir, runs), work_dir / name,
                         index, request.threads)
            for index, (name, (spec, role)) in enumerate(models.items(), first_index)}


def _record(request: PortRequest, models: dict[str, tuple[ModelSpec, str]], source_dir: Path | None,
            runs: list[dict[str, Any]], work_dir: Path, first_index: int = 0) -> dict[str, dict[str, Any]]:
    answers = collect(_start(request, models, source_dir, runs, work_dir, first_index), request.timeout_s,
                      request.costs, len(runs))
    _check(answers)
    return answers


def _wait_for_export(started: tuple, timeout_s: float) -> bool:
    """Whether the source's child exported its layers before it ended (it goes on recording)."""
    child, out, _ = started
    deadline = time.monotonic() + timeout_s
    while not (out / READY).exists():
        if child.poll() is not None or time.monotonic() > deadline:
            return (out / READY).exists()
        time.sleep(0.05)
    return True


def _compared_layers(answers: dict[str, dict[str, Any]], source: str) -> None:
    """Every answer lists the layers compared: those of the source every target matched."""
    matched = None
    for name, answer in answers.items():
        if name != source and answer.get("status") == "done":
            got = {p["source"] for p in answer.get("pairs", [])}
            matched = got if matched is None else matched & got
    for answer in answers.values():
        for info in answer.get("runs", {}).values():
            if info.get("status") == "ok" and matched is not None:
                info["layers"] = [layer for layer in info["layers"] if layer[0] in matched]


def _source_stands_for(answer: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A model's base records linked under every rerun's name: the source (never rerun), or a
    target that matched it."""
    folder, copied = Path(answer["dir"]), {**answer, "runs": dict(answer["runs"])}
    for run in runs:
        for dtype in ("float32", "float64"):
            base = copied["runs"].get(f"{BASE}-{dtype}")
            link = folder / f"{run['name']}-{dtype}.npz"
            if base is not None and base.get("status") == "ok" and not link.exists():
                os.symlink(f"{BASE}-{dtype}.npz", link)
            copied["runs"][f"{run['name']}-{dtype}"] = base or {"status": "failed"}
    return copied


def dump_maps(answers: dict[str, dict[str, Any]], request: PortRequest, path: Path) -> list[Path]:
    """The matching each target chose, as map files (`path`, then `path` with -<target> added)."""
    written = []
    for index, (name, spec) in enumerate(zip(request.names[1:], request.targets)):
        pairs = [Pair(**p) for p in answers[name].get("pairs", []) if p["source"] and p["kind"]]
        out = path if index == 0 else path.with_name(f"{path.stem}-{name}{path.suffix}")
        write_map(pairs, out, request.source.text, spec.text)
        written.append(out)
    return written


def port(request: PortRequest, work_dir: Path, dump_map: Path | None = None) -> dict[str, Any]:
    """The whole check: record source and targets, compare, try the candidate causes."""
    began = time.perf_counter()
    names = request.names
    source_name = names[0]
    runs = [{"name": BASE, "align": {}}]
    source = _start(request, {source_name: (request.source, "source")}, None, runs, work_dir / "record")
    source_dir = source[source_name][1]
    targets = {n: (s, "target") for n, s in zip(names[1:], request.targets)}
    answers: dict[str, dict[str, Any]] = {}
    if _wait_for_export(source[source_name], request.timeout_s):  # targets record while the source does
        started = _start(request, targets, source_dir, runs, work_dir / "record", 1)
        answers = collect(started, request.timeout_s, request.costs, len(runs))
        if any(a.get("status") == "bad input" for a in answers.values()):
            children.kill(source[source_name][0])  # its records would not be read
    answers = {**collect(source, request.timeout_s, request.costs, len(runs)), **answers}
    _check(answers)
    if answers[source_name].get("status") != "done":
        raise PortFailed(f"{request.source.text}: {answers[source_name].get('error')} "
                         f"(details: {source_dir / 'stderr.log'})")
    if dump_map is not None:
        dump_maps(answers, request, dump_map)
    _compared_layers(answers, source_name)
    base = analyse(answers, BASE, request.steps)
    if base["failures"] and base["status"] == "no divergence":
        base["status"] = "no verdict"  # a model that recorded nothing matches nothing
    kinds = sorted({layer["kind"] for layer in answers[source_name].get("layers_described", [])})
    notes = (
        [RUNNING_VAR_NOTE]
        if "batchnorm" in kinds
        and any(
            _payload(request, s, "", None, [])["optimizer"].get("bn_running_var")
            for s in [request.source, *request.targets]
        )
        else []
    )
    result: dict[str, Any] = {
        "task": f"port {request.source.text} -> {', '.join(t.text for t in request.targets)}",
        "frameworks": names,
        "modes": {n: s.text for n, s in zip(names, [request.source, *request.targets])},
        "variant": None,
        "steps": request.steps,
        "overrides": {},
        "seed": request.seed,
        "threshold": compare.THRESHOLD,
        "floor_ulps": compare.FLOOR_ULPS,
        "optimizer": request.optimizer,
        "inputs": [i.to_json() for i in request.inputs],
        "layouts": {n: a.get("layout") for n, a in answers.items()},
        "flatten_permuted": {
            n: a.get("flatten_permuted", []) for n, a in answers.items() if n != source_name
        },
        "matching": {n: a.get("pairs", []) for n, a in answers.items() if n != source_name},
        "notes": notes,
        "versions": {n: a.get("versions", {}) for n, a in answers.items()},
        "base": base,
        "causes": [],
        "cause": None,
    }
    if base["status"] == "diverges":
        causes = [dataclasses.replace(c, value=SOURCE_VALUE) for c in candidate_causes(base)]
        if causes:
            reruns = [{"name": f"align-{c.key}", "align": c.align} for c in causes]
            # only the targets that differ from the source are rerun; the others' records stand
            differing = {n: m for n, m in targets.items()
                         if base["pairs"].get(f"{source_name}|{n}", {}).get("status") != "no divergence"}
            rerun = _record(request, differing, source_dir, reruns, work_dir / "causes", 1)
            again = {n: rerun[n] if n in rerun else _source_stands_for(answers[n], reruns) for n in names}
            _compared_layers(again, source_name)
            for cause, run in zip(causes, reruns):
                result["causes"].append(confirm(base, cause, analyse(again, run["name"], request.steps)))
            confirmed = [c for c in result["causes"] if c["outcome"] in ("confirmed", "partly")]
            result["cause"] = confirmed[0] if confirmed else None
    result["cost"] = {"total_s": time.perf_counter() - began, "per_framework": request.costs}
    return result
