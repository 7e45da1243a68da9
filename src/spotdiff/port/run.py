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

from spotdiff.errors import UserError
from spotdiff.locate import compare
from spotdiff.locate.run import BASE, analyse, candidate_causes, collect, confirm, launch
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
    """A child found the user's input unusable; `details` is where its traceback was saved."""


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


def _check(answers: dict[str, dict[str, Any]], specs: dict[str, ModelSpec]) -> None:
    """Bad input in any child: one line, its traceback kept in its folder."""
    for name, answer in answers.items():
        if answer.get("status") == "bad input":
            where = Path(answer["dir"]) / "answer.json"
            raise PortBadInput(f"{answer['error']} (traceback: {where})")


def _record(
    request: PortRequest,
    models: dict[str, tuple[ModelSpec, str]],
    source_dir: Path | None,
    runs: list[dict[str, Any]],
    work_dir: Path,
    first_index: int = 0,
) -> dict[str, dict[str, Any]]:
    started = {}
    for index, (name, (spec, role)) in enumerate(models.items(), first_index):
        payload = _payload(request, spec, role, source_dir, runs)
        started[name] = launch(CHILD_MODULE, payload, work_dir / name, index, request.threads)
    answers = collect(started, request.timeout_s, request.costs, len(runs))
    _check(answers, {n: s for n, (s, _) in models.items()})
    return answers


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
    """The source's base records, linked under every rerun's name (it is not rerun)."""
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
    answers = _record(request, {source_name: (request.source, "source")}, None, runs, work_dir / "record")
    source_dir = Path(answers[source_name]["dir"])
    if answers[source_name].get("status") != "done":
        raise PortBadInput(
            f"{request.source.text}: {answers[source_name].get('error')} "
            f"(details: {source_dir / 'stderr.log'})"
        )
    targets = {n: (s, "target") for n, s in zip(names[1:], request.targets)}
    answers.update(_record(request, targets, source_dir, runs, work_dir / "record", 1))
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
            rerun = _record(request, targets, source_dir, reruns, work_dir / "causes", 1)
            again = {source_name: _source_stands_for(answers[source_name], reruns), **rerun}
            _compared_layers(again, source_name)
            for cause, run in zip(causes, reruns):
                result["causes"].append(confirm(base, cause, analyse(again, run["name"], request.steps)))
            confirmed = [c for c in result["causes"] if c["outcome"] in ("confirmed", "partly")]
            result["cause"] = confirmed[0] if confirmed else None
    result["cost"] = {"total_s": time.perf_counter() - began, "per_framework": request.costs}
    return result
