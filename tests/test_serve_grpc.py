"""gRPC on a real `spotdiff serve` process: TF Serving's official PredictionServiceStub and KServe v2's
GRPCInferenceService (tritonclient's client and stubs); every bad request, then a good one."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require, run_cli
from serve_support import ONNX, free_port, serving_root, start_server, stop

grpc = require("grpc")
require("tensorflow_serving")
require("tritonclient.grpc")


@pytest.fixture(scope="module")
def server(exported_models, tmp_path_factory):
    rest_port, grpc_port = free_port(), free_port()
    root = serving_root(exported_models, tmp_path_factory)
    process = start_server(root, rest_port, grpc_port)
    channel = grpc.insecure_channel(
        f"127.0.0.1:{grpc_port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    yield channel, grpc_port, root
    channel.close()
    stop(process)


@pytest.fixture(scope="module")
def tfs(server):
    """The official client: PredictionServiceStub plus tf.make_tensor_proto, as TF Serving's docs show."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return tf, prediction_service_pb2_grpc.PredictionServiceStub(server[0])


def _predict_request(tf, images, name=ONNX, version=None, input_name="images", signature="serving_default"):
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = name, signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[input_name].CopyFrom(
        images if not isinstance(images, np.ndarray) else tf.make_tensor_proto(images)
    )
    return request


def _good_predict(tf, stub):
    response = stub.Predict(_predict_request(tf, np.zeros((2, 28, 28, 1), np.float32)), timeout=30)
    logits = tf.make_ndarray(response.outputs["logits"])
    assert logits.shape == (2, 10) and response.model_spec.version.value == 1
    return logits


def test_official_client_predict_and_metadata(tfs):
    tf, stub = tfs
    from tensorflow_serving.apis import get_model_metadata_pb2

    logits = _good_predict(tf, stub)
    versioned = stub.Predict(_predict_request(tf, np.zeros((2, 28, 28), np.float32), version=1), timeout=30)
    assert np.allclose(tf.make_ndarray(versioned.outputs["logits"]), logits)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = ONNX
    response = stub.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert [d.size for d in signature.inputs["images"].tensor_shape.dim] == [-1, 28, 28, 1]
    assert list(signature.outputs) == ["logits"]


def _bad_tensor(tf, kind):
    if kind == "truncated":  # the gRPC analogue of malformed JSON: content that does not fill the shape
        proto = tf.make_tensor_proto(np.zeros((1, 28, 28, 1), np.float32))
        proto.tensor_content = proto.tensor_content[:-7]
        return proto
    return {
        "wrong shape": np.zeros((1, 27, 28, 1), np.float32),
        "wrong dtype": np.zeros((1, 28, 28, 1), np.float64),
        "strings": np.full((1, 28, 28, 1), b"a", dtype=object),
        "nan": np.full((1, 28, 28, 1), np.nan, np.float32),
        "infinity": np.full((1, 28, 28, 1), np.inf, np.float32),
        "too many instances": np.zeros((257, 28, 28, 1), np.float32),
        "message too large": np.zeros((3000, 28, 28, 1), np.float32),  # 9.4 MB > 8 MiB
    }[kind]


BAD_PREDICT = [
    ("truncated", {}, "INVALID_ARGUMENT"),
    ("wrong shape", {}, "INVALID_ARGUMENT"),
    ("wrong dtype", {}, "INVALID_ARGUMENT"),
    ("strings", {}, "INVALID_ARGUMENT"),
    ("nan", {}, "INVALID_ARGUMENT"),
    ("infinity", {}, "INVALID_ARGUMENT"),
    ("too many instances", {}, "INVALID_ARGUMENT"),
    ("message too large", {}, "RESOURCE_EXHAUSTED"),
    ("wrong shape", {"input_name": "pixels"}, "INVALID_ARGUMENT"),
    ("nan", {"signature": "classify"}, "INVALID_ARGUMENT"),
    ("nan", {"name": "nope"}, "NOT_FOUND"),
    ("nan", {"version": 7}, "NOT_FOUND"),
    ("nan", {"name": "../../etc"}, "INVALID_ARGUMENT"),
]


@pytest.mark.parametrize(
    "kind,spec,code", BAD_PREDICT, ids=[f"{k}-{'-'.join(map(str, s.values()))}" for k, s, _ in BAD_PREDICT]
)
def test_bad_predict_is_a_status_code_and_serving_goes_on(tfs, kind, spec, code):
    tf, stub = tfs
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(_predict_request(tf, _bad_tensor(tf, kind), **spec), timeout=30)
    assert raised.value.code().name == code, raised.value.details()
    assert raised.value.details()
    _good_predict(tf, stub)


def test_undecodable_bytes_do_not_stop_the_server(tfs, server):
    tf, stub = tfs
    raw = server[0].unary_unary("/tensorflow.serving.PredictionService/Predict")
    with pytest.raises(grpc.RpcError) as raised:
        raw(b"\xff\xff\xff", timeout=30)  # not a protobuf: grpcio itself rejects it
    assert raised.value.code() != grpc.StatusCode.OK
    _good_predict(tf, stub)


def test_bad_metadata_request(tfs):
    tf, stub = tfs
    from tensorflow_serving.apis import get_model_metadata_pb2

    for name, fields, code in [
        ("nope", ["signature_def"], "NOT_FOUND"),
        (ONNX, ["everything"], "INVALID_ARGUMENT"),
    ]:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
        request.model_spec.name = name
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetModelMetadata(request, timeout=30)
        assert raised.value.code().name == code
    _good_predict(tf, stub)


def test_kserve_official_client(server):
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(f"127.0.0.1:{server[1]}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(ONNX)
    metadata = client.get_model_metadata(ONNX)
    assert metadata.inputs[0].datatype == "FP32" and list(metadata.inputs[0].shape) == [-1, 28, 28, 1]
    images = triton.InferInput("images", [3, 28, 28, 1], "FP32")
    images.set_data_from_numpy(np.zeros((3, 28, 28, 1), np.float32))
    result = client.infer(ONNX, [images], model_version="1")
    assert result.as_numpy("logits").shape == (3, 10)
    client.close()


def _infer_request(data, shape=(1, 28, 28, 1), datatype="FP32", name=ONNX, version=""):
    from tritonclient.grpc import service_pb2

    tensor = service_pb2.ModelInferRequest.InferInputTensor(
        name="images", datatype=datatype, shape=list(shape)
    )
    raw = data if isinstance(data, bytes) else np.asarray(data, "<f4").tobytes()
    return service_pb2.ModelInferRequest(
        model_name=name, model_version=version, inputs=[tensor], raw_input_contents=[raw]
    )


BAD_INFER = [
    ("wrong shape", np.zeros(783), {}, "INVALID_ARGUMENT"),
    ("wrong dtype", np.zeros(784), {"datatype": "BYTES"}, "INVALID_ARGUMENT"),
    ("raw bytes not fp32", b"\x00" * 783 * 4 + b"\x00", {}, "INVALID_ARGUMENT"),
    ("nan", np.full(784, np.nan), {}, "INVALID_ARGUMENT"),
    ("too many instances", np.zeros(257 * 784), {"shape": (257, 28, 28, 1)}, "INVALID_ARGUMENT"),
    ("message too large", np.zeros(3000 * 784), {"shape": (3000, 28, 28, 1)}, "RESOURCE_EXHAUSTED"),
    ("unknown model", np.zeros(784), {"name": "nope"}, "NOT_FOUND"),
    ("unknown version", np.zeros(784), {"version": "7"}, "NOT_FOUND"),
    ("path-like name", np.zeros(784), {"name": "../etc"}, "INVALID_ARGUMENT"),
]


@pytest.mark.parametrize("case,data,spec,code", BAD_INFER, ids=[b[0] for b in BAD_INFER])
def test_kserve_bad_infer_is_a_status_code_and_serving_goes_on(server, case, data, spec, code):
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    stub = service_pb2_grpc.GRPCInferenceServiceStub(server[0])
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(_infer_request(data, **spec), timeout=30)
    assert raised.value.code().name == code and raised.value.details()
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelReady(service_pb2.ModelReadyRequest(name="nope"), timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    good = stub.ModelInfer(_infer_request(np.zeros(2 * 784), shape=(2, 28, 28, 1)), timeout=30)
    assert list(good.outputs[0].shape) == [2, 10] and len(good.raw_output_contents[0]) == 2 * 10 * 4


def test_a_busy_grpc_port_or_a_missing_root_is_one_line_and_exit_2(server, tmp_path):
    busy = run_cli(
        "serve", str(server[2]), "--rest-port", str(free_port()), "--grpc-port", str(server[1]), timeout=120
    )
    missing = run_cli("serve", str(tmp_path / "nothing"), "--rest-port", str(free_port()), timeout=60)
    for done, message in [(busy, "cannot bind gRPC"), (missing, "no such directory")]:
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr
