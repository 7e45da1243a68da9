"""Child process of `spotdiff port`: ONE user model loaded, given the source's weights, recorded.

    python -m spotdiff.port.child REQUEST_JSON OUT_DIR

REQUEST_JSON: {"model": ModelSpec, "role": "source" | "target", "source_dir", "inputs": [InputSpec],
"layout": auto | nchw | nhwc, "steps", "optimizer": {"name", "lr", ...}, "map", "runs": [{"name",
"align"}], "seed", "bn_running_var": "biased" | null}. The source exports its layers (OUT_DIR/layers.json,
weights.npz) and the inputs (inputs.npz, canonical layout); a target matches its layers to the
source's (`port.matching`) and loads the source's weights. Then, for every run and for float32 and
float64, the model is built afresh, given the weights, aligned as the run says, and trained for
`steps` steps; OUT_DIR/<run>-<dtype>.npz and answer.json are written in the format of
`spotdiff.locate.child`, so `locate`'s compare / verdict / summary read them unchanged. Names in
every record are the SOURCE's. Bad input (a factory that raises, a model that fails on the input,
a matching that fails) ends with status "bad input" and its one-line reason.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from spotdiff.locate.child import DTYPES

ADAPTERS = {"torch": "torch", "keras": "keras", "flax": "jax"}  # framework -> backends/<folder>/port.py
CHANNELS_LAST = "nhwc"
READY = "exported"  # written by the source once layers.json, weights.npz and inputs.npz are there


class BadInput(Exception):
    """The user's model or map cannot be used as given (exit 2 in the parent)."""


def _environment(model: dict[str, Any]) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # recording compares numerics: CPU, no TF32
    os.environ["JAX_PLATFORMS"] = "cpu"
    if model["framework"] == "keras":
        os.environ["KERAS_BACKEND"] = model["backend"]
    if model["backend"] in ("jax", "flax"):
        os.environ["JAX_ENABLE_X64"] = "1"  # the float64 run; float32 arrays stay float32


def make_inputs(specs: list[dict[str, Any]], vocab: int | None, seed: int) -> list[Any]:
    """The inputs in the source's layout: drawn (seeded) from their specs, or read from an .npz."""
    import numpy as np

    rng, found = np.random.default_rng(seed), []
    for spec in specs:
        if spec["npz"]:
            with np.load(spec["npz"]) as npz:
                found += [npz[k] for k in npz.files]
        elif spec["dtype"].startswith("int"):
            high = spec["vocab"] or vocab
            if high is None:
                raise BadInput(
                    f"input {spec['dtype']}{spec['shape']}: no embedding found to draw token ids "
                    "from; give the vocabulary size, e.g. int32[8,16]:vocab=100"
                )
            found.append(rng.integers(0, high, spec["shape"]).astype(spec["dtype"]))
        else:
            found.append(rng.standard_normal(spec["shape"]).astype(np.float32))  # one draw for both dtypes
    return found


def flatten_after_features(described: list[dict[str, Any]]) -> dict[str, tuple[int, int, int]]:
    """Channels-last models: dense layers fed by a flattened (B, H, W, C) feature map -> (C, H, W),
    the rows their kernel must have permuted. Found from the call trace: the last 4-D output
    before a dense layer whose 2-D input has H*W*C features."""
    found, last_map = {}, None
    for layer in described:
        if layer["kind"] == "dense" and last_map is not None and len(layer["in_shape"]) == 2:
            h, w, c = last_map
            if layer["in_shape"][1] == h * w * c:
                found[layer["name"]] = (c, h, w)
            last_map = None
        elif layer["kind"] == "dense":
            last_map = None
        if len(layer["out_shape"]) == 4:
            last_map = tuple(layer["out_shape"][1:])
    return found


SETTINGS = {  # align key -> (layer kind, the source layer's config entry the target copies)
    "layernorm_eps": ("layernorm", "eps"),
    "batchnorm_eps": ("batchnorm", "eps"),
    "batchnorm_momentum": ("batchnorm", "momentum_new"),
    "gelu": ("gelu", "approximate"),
    "gru_reset_after": ("gru", "reset_after"),
    "same_padding": ("conv2d", "padding"),
}


def settings_for(
    align: dict[str, Any], pairs: list[dict[str, str]], source_layers: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Target layer -> {align key: the source layer's value} for every alignment of the run."""
    found: dict[str, dict[str, Any]] = {}
    for key in align:
        if key not in SETTINGS:
            continue
        kind, entry = SETTINGS[key]
        for pair in pairs:
            config = source_layers.get(pair["source"], {}).get("config", {})
            if pair["kind"] == kind and entry in config:
                found.setdefault(pair["target"], {})[key] = config[entry]
    return found


def _canonical_output(value: Any, layer: dict[str, Any], channels_last: bool) -> Any:
    from spotdiff.port import canonical

    if layer["kind"] == "gru":
        return canonical.recurrent_to_canonical(value)
    if not channels_last:
        return value
    if layer["kind"] == "flatten" and len(layer["in_shape"]) == 4:
        return canonical.flatten_to_canonical(value, tuple(layer["in_shape"][1:]))
    return canonical.feature_map_to_canonical(value)


def _record_run(
    adapter,
    request,
    run,
    dtype,
    weights,
    pairs,
    source_layers,
    inputs,
    flatten,
    described,
    channels_last,
    renames,
) -> dict[str, Any]:
    import numpy as np

    align = dict(run["align"])
    settings = settings_for(align, pairs, source_layers)
    model = adapter.build(request["model"], dtype, settings)
    honoured = set(adapter.apply(model, settings, request))
    if "flatten_order" in align and flatten:
        honoured.add("flatten_order")
        flatten = {}  # the other order: the dense rows as they come
    adapter.load(model, weights, flatten)
    source_of = {p["target"]: p["source"] for p in pairs}
    back = {layer: {theirs: ours for ours, theirs in names.items()} for layer, names in renames.items()}
    layer_of = {layer["name"]: layer for layer in described}
    steps = adapter.record(
        model, inputs, request["steps"], request["optimizer"], list(source_of), flatten, dtype
    )
    tensors = {}
    for step, got in enumerate(steps):
        for name, value in got["forward"].items():
            tensors[f"{step}/forward/{source_of[name]}"] = _canonical_output(
                np.asarray(value), layer_of[name], channels_last
            )
        tensors[f"{step}/loss"] = np.asarray(got["loss"])
        for phase, part in (("grad", "grads"), ("param", "values")):
            for name, params in got[part].items():
                for param, value in params.items():
                    param = back.get(name, {}).get(param, param)
                    tensors[f"{step}/{phase}/{source_of[name]}.{param}"] = np.asarray(value)
    return {"tensors": tensors, "aligned": sorted(honoured & set(align))}


def _own_layout(adapter, model, request) -> str | None:
    if request["layout"] != "auto" and request["role"] == "target":
        return request["layout"]
    return adapter.layout(model)


def record(request: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Load, match, transfer, record every run in both dtypes; the answer for answer.json."""
    import numpy as np

    from spotdiff import children
    from spotdiff.children import peak_rss_mb
    from spotdiff.port import canonical, matching
    from spotdiff.port.loading import FactoryError

    model_spec = request["model"]
    adapter = importlib.import_module(f"spotdiff.backends.{ADAPTERS[model_spec['framework']]}.port")
    began = time.perf_counter()
    versions = adapter.configure(children.pinned().get("threads", 1), request["seed"], model_spec)
    import_s = time.perf_counter() - began
    try:
        model = adapter.build(model_spec, "float32", {})
    except FactoryError as error:
        raise BadInput(f"{model_spec['text']}: {error}") from error
    layout = _own_layout(adapter, model, request)
    channels_last = layout == CHANNELS_LAST
    if request["role"] == "source":
        vocab = adapter.vocab(model)
        inputs = make_inputs(request["inputs"], vocab, request["seed"])
        if channels_last:  # the inputs travel in the canonical layout (NCHW)
            inputs = [canonical.feature_map_to_canonical(x) for x in inputs]
        np.savez(out_dir / "inputs.npz", *inputs)
    else:
        with np.load(Path(request["source_dir"]) / "inputs.npz") as npz:
            inputs = [npz[k] for k in npz.files]
    own_inputs = [canonical.feature_map_to_native(x) if channels_last else x for x in inputs]
    try:
        described = adapter.describe(model, own_inputs)
    except Exception as error:
        shapes = ", ".join(f"{x.dtype}{list(x.shape)}" for x in own_inputs)
        raise BadInput(
            f"{model_spec['text']}: the model fails on the input {shapes}: {type(error).__name__}: {error}"
        ) from error
    flatten = flatten_after_features(described) if channels_last else {}
    exported = adapter.export(model, [layer["name"] for layer in described], flatten)
    for layer in described:
        layer["shapes"] = canonical.shapes(exported[layer["name"]]["params"])
    if request["role"] == "source":
        (out_dir / "layers.json").write_text(json.dumps(described))
        np.savez(
            out_dir / "weights.npz",
            **{
                f"{name}/{param}": value
                for name, got in exported.items()
                for part in ("params", "buffers")
                for param, value in got[part].items()
            },
        )
        (out_dir / READY).touch()  # the targets may start: they need only these files
        pairs = [
            {"source": layer["name"], "target": layer["name"], "kind": layer["kind"], "transform": "none"}
            for layer in described
        ]
        source_layers = {layer["name"]: layer for layer in described}
        weights = {
            name: {**got["params"], **got["buffers"]} for name, got in exported.items() if got["params"]
        }
        renames = {}
    else:
        source_list = json.loads((Path(request["source_dir"]) / "layers.json").read_text())
        source_layers = {layer["name"]: layer for layer in source_list}
        pinned = {k: tuple(v) for k, v in (request.get("map") or {}).items()}
        try:
            chosen = matching.match(source_list, described, pinned)
        except matching.MatchError as error:
            raise BadInput(str(error)) from error
        pairs = [p.to_json() for p in chosen]
        renames = _raw_renames(pairs, source_layers, {layer["name"]: layer for layer in described})
        weights = _weights_for(pairs, Path(request["source_dir"]) / "weights.npz", renames)
    answer: dict[str, Any] = {
        "status": "done",
        "versions": versions,
        "import_s": import_s,
        "runs": {},
        "layout": layout,
        "pairs": pairs,
        "layers_described": described,
        "flatten_permuted": sorted(flatten),
    }
    kept_layers = [(p["source"], p["kind"]) for p in pairs]
    params = [f"{p['source']}.{name}" for p in pairs for name in source_layers[p["source"]]["shapes"]]
    buffers = [f"{p['source']}.{name}" for p in pairs for name in canonical.BUFFERS.get(p["kind"], ())]
    for run in request["runs"]:
        for dtype in DTYPES:
            key = f"{run['name']}-{dtype}"
            started = time.perf_counter()
            try:
                got = _record_run(
                    adapter,
                    request,
                    run,
                    dtype,
                    weights,
                    pairs,
                    source_layers,
                    own_inputs,
                    flatten,
                    described,
                    channels_last,
                    renames,
                )
            except Exception as error:
                answer["runs"][key] = {
                    "status": "failed",
                    "error": f"{type(error).__name__}: {error}",
                    "traceback": traceback.format_exc()[-3000:],
                }
                continue
            narrow = sorted(n for n, v in got["tensors"].items()
                            if v.dtype.kind == "f" and v.dtype.itemsize < np.dtype(dtype).itemsize)
            if narrow:  # a "float64" run in float32 would measure a floor of zero on its side
                answer["runs"][key] = {"status": "failed", "error": f"asked for {dtype}, recorded "
                                       f"{got['tensors'][narrow[0]].dtype}: {', '.join(narrow[:3])}"}
                continue
            np.savez(out_dir / f"{key}.npz", **got["tensors"])
            answer["runs"][key] = {
                "status": "ok",
                "record_s": time.perf_counter() - started,
                "layers": kept_layers,
                "params": params,
                "buffers": buffers,
                "optimizer": request["optimizer"]["name"],
                "aligned": got["aligned"],
                "nonfinite": sorted(n for n, v in got["tensors"].items() if not np.all(np.isfinite(v))),
            }
    answer["peak_rss_mb"] = peak_rss_mb()
    return answer


def _raw_renames(
    pairs: list[dict[str, str]],
    source_layers: dict[str, dict[str, Any]],
    target_layers: dict[str, dict[str, Any]],
) -> dict[str, dict[str, str]]:
    """`other` layers keep their frameworks' own param names: target layer -> {source name:
    target name}, paired in order (the matching checked the shapes)."""
    return {
        p["target"]: dict(zip(source_layers[p["source"]]["shapes"], target_layers[p["target"]]["shapes"]))
        for p in pairs
        if p["kind"] == "other"
    }


def _weights_for(
    pairs: list[dict[str, str]], path: Path, renames: dict[str, dict[str, str]]
) -> dict[str, dict[str, Any]]:
    """Target layer -> the source's canonical params and buffers (an `other` layer's transposed
    when the matching says so)."""
    import numpy as np

    by_layer: dict[str, dict[str, Any]] = {}
    with np.load(path) as npz:
        for key in npz.files:
            layer, param = key.rsplit("/", 1)
            by_layer.setdefault(layer, {})[param] = npz[key]
    weights = {}
    for pair in pairs:
        if pair["source"] in by_layer:
            got = by_layer[pair["source"]]
            if pair["transform"] == "transpose":
                got = {k: np.ascontiguousarray(v.T) for k, v in got.items()}
            rename = renames.get(pair["target"], {})
            weights[pair["target"]] = {rename.get(k, k): v for k, v in got.items()}
    return weights


def main(argv: list[str]) -> int:
    request, out_dir = json.loads(Path(argv[0]).read_text()), Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    _environment(request["model"])
    try:
        answer = record(request, out_dir)
    except BadInput as error:
        answer = {"status": "bad input", "error": str(error), "traceback": traceback.format_exc()[-6000:]}
    except BaseException as error:  # the parent reads why from the answer, not from a traceback
        answer = {
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc()[-6000:],
        }
    (out_dir / "answer.json").write_text(json.dumps(answer, indent=1, default=str))
    return 0 if answer["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
