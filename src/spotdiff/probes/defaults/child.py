"""Child process of the defaults audit: ONE framework, every requested component.

    python -m spotdiff.probes.defaults.child FRAMEWORK REQUEST_JSON OUT_JSON

REQUEST_JSON: {"components": [...], "seed": int, "steps": int, "threads": int}. OUT_JSON is
rewritten after every component, so a crash keeps what was finished; a component that raises
becomes {"status": "failed", "error": ...} and the others still run.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from spotdiff import frameworks
from spotdiff.hparams import REQUIRED, declared_value, native_kwargs, native_name, unsupported
from spotdiff.probes.defaults.compare import case_for, digest
from spotdiff.probes.defaults.components import COMPONENTS
from spotdiff.probes.defaults.initcheck import init_stats


def jsonable(value: Any) -> Any:
    """Numbers, strings, lists and dicts as they are; arrays as lists; anything else as text."""
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        return jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return repr(value)


def settings_for(
    framework: str, name: str, mode: str, declared: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The neutral values this framework is given in `mode`, and notes on what was filled or left out.

    native: the component's fixed settings, plus a fill value only where the framework declares the
    argument as required. aligned: every aligned value the framework has an argument for."""
    comp, notes = COMPONENTS[name], []
    values = dict(comp.fixed)
    if mode == "native":
        for key, value in comp.fill.items():
            if key not in values and declared.get(native_name(name, key, framework) or "") == REQUIRED:
                values[key] = value
                notes.append(f"{key} is required here: {value} given")
    else:
        values.update(comp.aligned)
        absent = unsupported(framework, name, values)
        for key in absent:
            values.pop(key)
        if absent:
            notes.append(f"no argument for {', '.join(absent)} (fixed behaviour)")
    return values, notes


def probe_component(probe: Any, framework: str, name: str, seed: int, steps: int) -> dict[str, Any]:
    comp = COMPONENTS[name]
    declared = jsonable(probe.declared(name))
    missing = unsupported(framework, name, comp.fixed)
    if missing:
        return {"status": "n/a", "declared": declared, "error": f"no argument for {', '.join(missing)}"}
    entry: dict[str, Any] = {"status": "ok", "declared": declared, "modes": {}, "notes": []}
    case = case_for(name, seed, steps)
    for mode in ("native", "aligned"):
        values, notes = settings_for(framework, name, mode, declared)
        kwargs = native_kwargs(framework, name, values)
        if comp.kind == "optimizer":
            outputs = probe.run_optimizer(name, kwargs, case)
        else:
            outputs = probe.run_layer(name, dict(kwargs), case, seed)
        notes += [outputs.pop(k) for k in list(outputs) if k.startswith("_")]
        effective = {
            k: values[k] if k in values else declared_value(name, k, framework, declared)
            for k in {**comp.aligned, **comp.fixed, **comp.fill}
        }
        entry["modes"][mode] = {
            "values": jsonable(values),
            "kwargs": jsonable(kwargs),
            "effective": jsonable(effective),
            "outputs": jsonable(digest(name, outputs)),
        }
        entry["notes"] += [f"{mode}: {note}" for note in notes]
    entry["init"] = {param: init_stats(array, name) for param, array in probe.sample_init(name, seed).items()}
    return entry


def write(path: Path, result: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result), encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str]) -> int:
    framework, request_path, out_path = argv[0], Path(argv[1]), Path(argv[2])
    request = json.loads(request_path.read_text())
    # Cores and thread variables were pinned by spotdiff.children before anything was imported.
    os.environ.update({"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"})
    result: dict[str, Any] = {"framework": framework, "status": "running", "components": {}}
    write(out_path, result)
    env = importlib.import_module(f"spotdiff.backends.{framework}.env")  # imports the framework
    env.configure(request["threads"], request["seed"], "cpu")
    prefix = frameworks.FRAMEWORKS[framework].impl_prefix
    probe = importlib.import_module(f"spotdiff.probes.defaults.{prefix}_probe")
    result["versions"] = probe.versions()
    for name in request["components"]:
        try:
            result["components"][name] = probe_component(
                probe, framework, name, request["seed"], request["steps"]
            )
        except Exception as error:  # one broken component is a failed row, not a failed audit
            message = f"{type(error).__name__}: {error}".strip().splitlines()[0][:300]
            result["components"][name] = {"status": "failed", "error": message}
        write(out_path, result)
    result["status"] = "done"
    write(out_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
