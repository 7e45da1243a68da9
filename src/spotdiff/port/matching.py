"""Source layers -> target layers, in call order by kind and canonical shape, or as a map says.

A layer is a dict `{"name", "kind", "shapes": {canonical param: shape}, "config": {...}}` (shapes
of parameters only; buffers travel with their layer). Parametrised layers are paired one by one
in call order; layers without parameters (relu, flatten, ...) by kind in call order when both
models have as many of that kind. A `--map` (TOML) pins pairs first:

    [layers]
    fc1 = "dense"                                          # source layer = target layer
    head = { target = "out", transform = "transpose" }    # an `other` layer's 2-D params transposed

Errors (`MatchError`, one line) name the first source parameter that could not be matched and
the candidates; the parent turns them into exit 2.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRANSFORMS = ("none", "transpose")


class MatchError(ValueError):
    """The two models' layers cannot be paired (one line for the user)."""


@dataclass(frozen=True)
class Pair:
    source: str
    target: str
    kind: str
    transform: str = "none"  # `other` layers: how the raw params go across

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "target": self.target, "kind": self.kind, "transform": self.transform}


def parameter_count(layers: list[dict[str, Any]]) -> int:
    return sum(math.prod(shape) for layer in layers for shape in layer["shapes"].values())


def read_map(path: str | Path) -> dict[str, tuple[str, str]]:
    """`[layers]` of a map file: source layer -> (target layer, transform)."""
    try:
        document = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise MatchError(f"--map {path}: cannot read it ({error})") from None
    found = {}
    for source, value in document.get("layers", {}).items():
        target, transform = (
            (value, "none")
            if isinstance(value, str)
            else (value.get("target"), value.get("transform", "none"))
        )
        if not isinstance(target, str) or transform not in TRANSFORMS:
            raise MatchError(
                f"--map {path}: {source} needs a target name and a transform in {', '.join(TRANSFORMS)}"
            )
        found[source] = (target, transform)
    return found


def write_map(pairs: list[Pair], path: str | Path, source: str, target: str) -> None:
    """The matching chosen, as a map file the user can edit and pass back with --map."""
    lines = [f"# spotdiff port: {source} -> {target}; edit and pass back with --map", "[layers]"]
    for pair in pairs:
        value = (
            f'"{pair.target}"'
            if pair.transform == "none"
            else f'{{ target = "{pair.target}", transform = "{pair.transform}" }}'
        )
        lines.append(f'"{pair.source}" = {value}  # {pair.kind}')
    Path(path).write_text("\n".join(lines) + "\n")


def _fits(source: dict[str, Any], target: dict[str, Any]) -> str | None:
    """The transform that carries `source`'s params into `target`, or None when none does."""
    if source["kind"] != target["kind"]:
        return None
    a, b = list(source["shapes"].values()), list(target["shapes"].values())
    if source["kind"] != "other":
        same = {k: tuple(v) for k, v in source["shapes"].items()} == {
            k: tuple(v) for k, v in target["shapes"].items()
        }
        return "none" if same else None
    if len(a) != len(b):
        return None
    if [tuple(s) for s in a] == [tuple(s) for s in b]:
        return "none"
    if all(tuple(x) == tuple(reversed(y)) for x, y in zip(a, b)):
        return "transpose"  # e.g. a dense kernel (out, in) in one, (in, out) in the other
    return None


def _describe(layer: dict[str, Any]) -> str:
    shapes = ", ".join(f"{k} {tuple(v)}" for k, v in layer["shapes"].items())
    return f"{layer['name']} ({layer['kind']}: {shapes})"


def match(
    source: list[dict[str, Any]],
    target: list[dict[str, Any]],
    pinned: dict[str, tuple[str, str]] | None = None,
) -> list[Pair]:
    """Every source layer with parameters paired with a target layer, then the parameter-free
    layers both models have as many of; raises MatchError when that is impossible."""
    pinned = pinned or {}
    with_params = [layer for layer in source if layer["shapes"]]
    candidates = [layer for layer in target if layer["shapes"]]
    by_name = {layer["name"]: layer for layer in candidates}
    source_names = {layer["name"] for layer in with_params}
    for name, (other, _) in pinned.items():
        if name not in source_names:
            raise MatchError(
                f"--map names {name!r}, which is not a layer with parameters of the source; "
                f"its layers: {', '.join(sorted(source_names))}"
            )
        if other not in by_name:
            raise MatchError(
                f"--map names {other!r}, which is not a layer with parameters of the target; "
                f"its layers: {', '.join(sorted(by_name))}"
            )
    counts = parameter_count(source), parameter_count(target)
    if counts[0] != counts[1]:
        raise MatchError(
            f"different parameter counts: the source has {counts[0]}, the target {counts[1]} "
            f"({len(with_params)} vs {len(candidates)} layers with parameters)"
        )
    taken = {other for other, _ in pinned.values()}
    free = [layer for layer in candidates if layer["name"] not in taken]
    pairs = []
    for layer in with_params:
        if layer["name"] in pinned:
            other, transform = pinned[layer["name"]]
            pairs.append(Pair(layer["name"], other, layer["kind"], transform))
            continue
        nxt = free[0] if free else None
        transform = _fits(layer, nxt) if nxt is not None else None
        if transform is None:
            fitting = [_describe(t) for t in free if _fits(layer, t) is not None]
            first = next(iter(layer["shapes"]))
            raise MatchError(
                f"cannot match {layer['name']}.{first} ({_describe(layer)}) with the target's next layer "
                f"{_describe(nxt) if nxt else '(none left)'}; candidates: {'; '.join(fitting) or 'none'}; "
                "pin it with --map (see --dump-map)"
            )
        free.remove(nxt)
        pairs.append(Pair(layer["name"], nxt["name"], layer["kind"], transform))
    plain_kinds = dict.fromkeys(layer["kind"] for layer in source if not layer["shapes"])
    for kind in plain_kinds:
        ours = [layer["name"] for layer in source if layer["kind"] == kind and not layer["shapes"]]
        theirs = [layer["name"] for layer in target if layer["kind"] == kind and not layer["shapes"]]
        if len(ours) == len(theirs):
            pairs += [Pair(a, b, kind) for a, b in zip(ours, theirs)]
    return pairs
