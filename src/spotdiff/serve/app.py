"""The REST server: TensorFlow Serving's REST API (/v1) and KServe v2 (/v2) on one Starlette app."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from spotdiff.serve.models import INPUT_SHAPE, NAME_RE, ServedModel, load_models

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_INSTANCES = 256


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)  # both protocols use {"error": ...}


def _pick(models, name: str, version: str | None) -> ServedModel:
    if not NAME_RE.match(name):
        raise BadRequest(f"invalid model name {name!r}")
    if name not in models:
        raise BadRequest(f"model {name!r} not found", 404)
    if version is None:
        return models[name][max(models[name])]
    if not version.isdigit() or int(version) not in models[name]:
        raise BadRequest(f"version {version!r} of model {name!r} not found", 404)
    return models[name][int(version)]


async def _body(request: Request) -> dict:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadRequest(f"request body over {MAX_BODY_BYTES} bytes", 413)
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise BadRequest(f"request body over {MAX_BODY_BYTES} bytes", 413)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"malformed JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


LAYOUTS = "[N, 28, 28, 1] (NHWC), [N, 1, 28, 28] (NCHW), [N, 28, 28] or [N, 784] (flat)"


def _images(value, shape=None) -> np.ndarray:
    """Nested lists (or flat data plus `shape`) in any of LAYOUTS -> a checked (N, 28, 28, 1) float32
    batch."""
    try:
        array = np.asarray(value)
    except ValueError:
        raise BadRequest("ragged input: every image must have the same shape") from None
    if array.dtype.kind not in "iuf":
        raise BadRequest(f"input must be numbers, got {array.dtype.kind!r} ({array.dtype})")
    if shape is not None:
        if array.size != int(np.prod(shape)):
            raise BadRequest(f"data has {array.size} values, shape {shape} needs {int(np.prod(shape))}")
        array = array.reshape(shape)
    if array.ndim == 2 and array.shape[1] == 28 * 28:  # flat rows, row-major like NHWC
        array = array.reshape(len(array), *INPUT_SHAPE)
    elif array.ndim == 3:
        array = array[..., None]
    elif array.ndim == 4 and array.shape[1:] == (1, 28, 28):  # channels-first, as PyTorch feeds it
        array = array.transpose(0, 2, 3, 1)
    if array.ndim != 4 or array.shape[1:] != INPUT_SHAPE:
        raise BadRequest(f"input shape {list(array.shape)}: expected {LAYOUTS}")
    if not 1 <= len(array) <= MAX_INSTANCES:
        raise BadRequest(f"{len(array)} instances: send 1 to {MAX_INSTANCES}")
    if not np.all(np.isfinite(array)):
        raise BadRequest("input contains NaN or infinity")
    return np.ascontiguousarray(array, dtype=np.float32)


async def _predict(model: ServedModel, x: np.ndarray) -> np.ndarray:
    return await asyncio.get_running_loop().run_in_executor(model.executor, model.run, x)


def build_app(root: Path, models=None) -> Starlette:
    """The app serving every model under `root` (or the given `{name: {version: ServedModel}}`)."""
    models = load_models(Path(root)) if models is None else models

    def status(model: ServedModel) -> dict:
        return {
            "version": str(model.version),
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }

    def metadata(model: ServedModel) -> dict:
        def tensor(name: str, dims) -> dict:
            return {
                "dtype": "DT_FLOAT",
                "tensor_shape": {"dim": [{"size": str(d)} for d in dims]},
                "name": name,
            }

        return {
            "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
            "metadata": {
                "signature_def": {
                    "signature_def": {
                        "serving_default": {
                            "inputs": {"images": tensor("images:0", (-1, *INPUT_SHAPE))},
                            "outputs": {"logits": tensor("logits:0", (-1, 10))},
                            "method_name": "tensorflow/serving/predict",
                        }
                    }
                }
            },
        }

    async def v1(request: Request) -> JSONResponse:
        try:
            rest, verb = request.path_params["rest"], None
            if request.method == "POST":
                rest, colon, verb = rest.rpartition(":")
                if not colon or verb != "predict":
                    raise BadRequest("unknown method: POST /v1/models/<name>[/versions/<v>]:predict", 404)
            parts = rest.split("/")
            want_metadata = request.method == "GET" and parts[-1] == "metadata"
            parts = parts[:-1] if want_metadata else parts
            if len(parts) == 3 and parts[1] == "versions":
                model = _pick(models, parts[0], parts[2])
            elif len(parts) == 1:
                model = _pick(models, parts[0], None)
            else:
                raise BadRequest(f"invalid model name {rest!r}")
            if request.method == "GET":
                return JSONResponse(
                    metadata(model) if want_metadata else {"model_version_status": [status(model)]}
                )
            body = await _body(request)
            if ("instances" in body) == ("inputs" in body):
                raise BadRequest("send exactly one of 'instances' (row format) or 'inputs' (columnar format)")
            if "instances" in body:
                return JSONResponse(
                    {"predictions": (await _predict(model, _images(body["instances"]))).tolist()}
                )
            inputs = body["inputs"]
            if isinstance(inputs, dict):
                if set(inputs) != {"images"}:
                    raise BadRequest("'inputs' must hold one tensor named 'images'")
                inputs = inputs["images"]
            return JSONResponse({"outputs": (await _predict(model, _images(inputs))).tolist()})
        except BadRequest as error:
            return _error(str(error), error.status)

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ready": bool(models)})

    async def v2_model(request: Request) -> JSONResponse:
        try:
            name, version, verb = (
                request.path_params["name"],
                request.path_params.get("version"),
                request.path_params.get("verb"),
            )
            model = _pick(models, name, version)
            if request.method == "GET":
                if verb == "ready":
                    return JSONResponse({"name": model.name, "ready": True})
                if verb is not None:
                    raise BadRequest(f"unknown endpoint {verb!r}", 404)
                return JSONResponse(
                    {
                        "name": model.name,
                        "versions": [str(v) for v in sorted(models[name])],
                        "platform": model.format,
                        "inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, *INPUT_SHAPE]}],
                        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
                    }
                )
            if verb != "infer":
                raise BadRequest("unknown method: POST /v2/models/<name>[/versions/<v>]/infer", 404)
            body = await _body(request)
            inputs = body.get("inputs")
            if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
                raise BadRequest("'inputs' must be a list with one tensor")
            tensor = inputs[0]
            if tensor.get("datatype") != "FP32":
                raise BadRequest(f"datatype {tensor.get('datatype')!r}: expected 'FP32'")
            shape = tensor.get("shape")
            if not (
                isinstance(shape, list)
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            ):
                raise BadRequest("'shape' must be a list of non-negative integers")
            logits = await _predict(model, _images(tensor.get("data"), shape))
            return JSONResponse(
                {
                    "model_name": model.name,
                    "model_version": str(model.version),
                    "id": body.get("id", ""),
                    "outputs": [
                        {
                            "name": "logits",
                            "datatype": "FP32",
                            "shape": list(logits.shape),
                            "data": logits.ravel().tolist(),
                        }
                    ],
                }
            )
        except BadRequest as error:
            return _error(str(error), error.status)

    routes = [
        Route("/v1/models/{rest:path}", v1, methods=["GET", "POST"]),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2/models/{name}", v2_model),
        Route("/v2/models/{name}/{verb}", v2_model, methods=["GET", "POST"]),
        Route("/v2/models/{name}/versions/{version}", v2_model),
        Route("/v2/models/{name}/versions/{version}/{verb}", v2_model, methods=["GET", "POST"]),
    ]

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return _error(f"no endpoint {request.method} {request.url.path}", getattr(exc, "status_code", 404))

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
