"""The gRPC server: TensorFlow Serving's `PredictionService` and KServe v2's `GRPCInferenceService`.

Both services use their projects' own generated stubs (`tensorflow-serving-api`, and
`tritonclient[grpc]`, which ships KServe v2's `grpc_service.proto` compiled), so the official clients
work unchanged. They share the REST app's model registry, locks and input checks: a bad request is
INVALID_ARGUMENT, an unknown model or version NOT_FOUND, a message over the size limit
RESOURCE_EXHAUSTED (enforced by grpcio itself), each with a message; the server keeps serving.
"""

from __future__ import annotations

from concurrent import futures

import grpc
import numpy as np

from spotdiff.errors import UserError
from spotdiff.serve.app import MAX_BODY_BYTES, BadRequest, _images, _pick
from spotdiff.serve.models import INPUT_SHAPE, ServedModel

SIGNATURE = "serving_default"
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def _abort(context, error: BadRequest):
    context.abort(STATUS_CODES.get(error.status, grpc.StatusCode.INVALID_ARGUMENT), str(error))


def _tf_serving_servicer(models):
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

    def model_of(spec) -> ServedModel:
        if spec.version_label:
            raise BadRequest(f"version label {spec.version_label!r} not found: no labels are configured", 404)
        if spec.signature_name not in ("", SIGNATURE):
            raise BadRequest(f"signature {spec.signature_name!r} not found; this model has {SIGNATURE!r}")
        return _pick(models, spec.name, str(spec.version.value) if spec.HasField("version") else None)

    def fill_spec(spec, model: ServedModel) -> None:
        spec.name, spec.signature_name = model.name, SIGNATURE
        spec.version.value = model.version

    def tensor_info(name: str, dims) -> meta_graph_pb2.TensorInfo:
        info = meta_graph_pb2.TensorInfo(name=name, dtype=types_pb2.DT_FLOAT)
        for size in dims:
            info.tensor_shape.dim.add(size=size)
        return info

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            try:
                model = model_of(request.model_spec)
                if set(request.inputs) != {"images"}:
                    raise BadRequest(f"inputs {sorted(request.inputs)}: expected one tensor named 'images'")
                proto = request.inputs["images"]
                if proto.dtype != types_pb2.DT_FLOAT:
                    raise BadRequest(f"input dtype {types_pb2.DataType.Name(proto.dtype)}: expected DT_FLOAT")
                try:
                    array = tf.make_ndarray(proto)  # (N, 28, 28, 1) or (N, 28, 28)
                except (ValueError, TypeError) as error:
                    raise BadRequest(f"cannot read the 'images' tensor: {error}") from None
                if set(request.output_filter) - {"logits"}:
                    raise BadRequest(f"output_filter {list(request.output_filter)}: this model has 'logits'")
                logits = model.run(_images(array))  # (N, 10)
            except BadRequest as error:
                _abort(context, error)
            response = predict_pb2.PredictResponse()
            fill_spec(response.model_spec, model)
            response.outputs["logits"].CopyFrom(tf.make_tensor_proto(logits))
            return response

        def GetModelMetadata(self, request, context):
            try:
                model = model_of(request.model_spec)
                if list(request.metadata_field) != ["signature_def"]:
                    raise BadRequest(f"metadata_field {list(request.metadata_field)}: only ['signature_def']")
            except BadRequest as error:
                _abort(context, error)
            signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
            signature.inputs["images"].CopyFrom(tensor_info("images:0", (-1, *INPUT_SHAPE)))
            signature.outputs["logits"].CopyFrom(tensor_info("logits:0", (-1, 10)))
            signatures = get_model_metadata_pb2.SignatureDefMap()
            signatures.signature_def[SIGNATURE].CopyFrom(signature)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            fill_spec(response.model_spec, model)
            response.metadata["signature_def"].Pack(signatures)
            return response

    return PredictionService(), prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server


def _kserve_servicer(models):
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    def model_of(request) -> ServedModel:
        return _pick(models, request.name, request.version or None)

    class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
        def ServerLive(self, request, context):
            return service_pb2.ServerLiveResponse(live=True)

        def ServerReady(self, request, context):
            return service_pb2.ServerReadyResponse(ready=bool(models))

        def ServerMetadata(self, request, context):
            return service_pb2.ServerMetadataResponse(name="spotdiff", version="1")

        def ModelReady(self, request, context):
            try:
                model_of(request)
            except BadRequest as error:
                _abort(context, error)
            return service_pb2.ModelReadyResponse(ready=True)

        def ModelMetadata(self, request, context):
            try:
                model = model_of(request)
            except BadRequest as error:
                _abort(context, error)
            tensor = service_pb2.ModelMetadataResponse.TensorMetadata
            return service_pb2.ModelMetadataResponse(
                name=model.name,
                versions=[str(v) for v in sorted(models[model.name])],
                platform=model.format,
                inputs=[tensor(name="images", datatype="FP32", shape=[-1, *INPUT_SHAPE])],
                outputs=[tensor(name="logits", datatype="FP32", shape=[-1, 10])],
            )

        def ModelInfer(self, request, context):
            try:
                model = _pick(models, request.model_name, request.model_version or None)
                if len(request.inputs) != 1:
                    raise BadRequest(f"{len(request.inputs)} input tensors: send one, 'images'")
                tensor = request.inputs[0]
                if tensor.datatype != "FP32":
                    raise BadRequest(f"datatype {tensor.datatype!r}: expected 'FP32'")
                if any(d < 0 for d in tensor.shape):
                    raise BadRequest("'shape' must be non-negative integers")
                if request.raw_input_contents:
                    raw = request.raw_input_contents[0]
                    if len(raw) % 4:
                        raise BadRequest(f"raw input of {len(raw)} bytes is not FP32 data")
                    data = np.frombuffer(raw, dtype="<f4")
                else:
                    data = np.asarray(tensor.contents.fp32_contents, dtype=np.float32)
                logits = model.run(_images(data, list(tensor.shape)))  # (N, 10)
            except BadRequest as error:
                _abort(context, error)
            out = service_pb2.ModelInferResponse.InferOutputTensor(
                name="logits", datatype="FP32", shape=list(logits.shape)
            )
            return service_pb2.ModelInferResponse(
                model_name=model.name,
                model_version=str(model.version),
                id=request.id,
                outputs=[out],
                raw_output_contents=[logits.astype("<f4").tobytes()],
            )

    return InferenceService(), service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server


def build_grpc_server(models, host: str = "127.0.0.1", port: int = 8500, workers: int = 16) -> grpc.Server:
    """A bound, not yet started, gRPC server for `{name: {version: ServedModel}}` on host:port."""
    limit = MAX_BODY_BYTES
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),  # a second server on the same port is an error, not a silent share
        ],
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:  # bind first: a busy port is reported before TensorFlow is imported for the servicers
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise UserError(f"cannot bind gRPC to {address}: is the port in use? pick another with --grpc-port")
    for make in (_tf_serving_servicer, _kserve_servicer):
        servicer, add = make(models)
        add(servicer, server)
    return server
