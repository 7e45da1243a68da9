"""Served logits equal the model's own: real digits test images, every protocol (TF Serving and
KServe v2, REST and gRPC) and every input layout the server accepts, for PyTorch served through
ONNX Runtime and through its own runtime (AOTInductor)."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
from conftest import require
from serve_support import TORCH_MODELS, free_port, serving_root, start_server, stop, torch_reference

grpc = require("grpc")
require("tensorflow_serving")
require("tritonclient.grpc")

LOGIT_ATOL = 1e-4  # absolute, as the export's own parity check (float32 runtimes differ by ~1e-7)
LAYOUTS = {
    "nhwc": lambda images: images[..., None],  # (N, 28, 28, 1)
    "nchw": lambda images: images[:, None],  # (N, 1, 28, 28)
    "flat": lambda images: images.reshape(len(images), 784),  # (N, 784)
}


@pytest.fixture(scope="module")
def served(exported_models, tmp_path_factory):
    root = serving_root(exported_models, tmp_path_factory)
    images, logits = torch_reference(root)
    rest_port, grpc_port = free_port(), free_port()
    server = start_server(root, rest_port, grpc_port)
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    yield {"images": images, "logits": logits, "rest": f"http://127.0.0.1:{rest_port}", "channel": channel}
    channel.close()
    stop(server)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def _rest_tfserving(served, name, x):
    answer = _post(f"{served['rest']}/v1/models/{name}:predict", {"instances": x.tolist()})
    return np.array(answer["predictions"])


def _rest_kserve(served, name, x):
    tensor = {"name": "images", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
    (out,) = _post(f"{served['rest']}/v2/models/{name}/infer", {"inputs": [tensor]})["outputs"]
    return np.reshape(out["data"], out["shape"])


def _grpc_tfserving(served, name, x):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(x))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(served["channel"])
    return tf.make_ndarray(stub.Predict(request, timeout=60).outputs["logits"])


def _grpc_kserve(served, name, x):
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    tensor = service_pb2.ModelInferRequest.InferInputTensor(name="images", datatype="FP32", shape=x.shape)
    request = service_pb2.ModelInferRequest(
        model_name=name, inputs=[tensor], raw_input_contents=[x.astype("<f4").tobytes()]
    )
    answer = service_pb2_grpc.GRPCInferenceServiceStub(served["channel"]).ModelInfer(request, timeout=60)
    return np.frombuffer(answer.raw_output_contents[0], "<f4").reshape(list(answer.outputs[0].shape))


PROTOCOLS = {
    "rest-tfserving": _rest_tfserving,
    "rest-kserve": _rest_kserve,
    "grpc-tfserving": _grpc_tfserving,
    "grpc-kserve": _grpc_kserve,
}


def test_the_oracle_sees_real_digits(served):
    images, logits = served["images"], served["logits"]
    assert images.shape == (16, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert len({image.tobytes() for image in images}) == 16 and images.sum(axis=(1, 2)).min() > 50
    assert logits.shape == (16, 10) and np.all(np.isfinite(logits))
    assert len(set(logits.argmax(1))) > 1  # a trained model that tells digits apart, not a constant


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
@pytest.mark.parametrize("name", TORCH_MODELS)
def test_served_logits_equal_the_models_own(served, name, protocol, layout):
    x = np.ascontiguousarray(LAYOUTS[layout](served["images"]), dtype=np.float32)
    got = PROTOCOLS[protocol](served, name, x)
    want = served["logits"]
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= LOGIT_ATOL, np.max(np.abs(got - want))
    assert np.array_equal(got.argmax(1), want.argmax(1))
