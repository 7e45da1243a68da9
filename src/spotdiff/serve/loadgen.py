"""Closed-loop load generator, run as a child: `python -m spotdiff.serve.loadgen SPEC_JSON`.

The spec names the models and protocols, the ports, the concurrencies and the bounds. For each
concurrency, that many worker threads each send one request, wait for the answer, and send the next
(closed loop), until the request budget is spent or the duration is up, whichever comes first.
Every protocol sends the same single image. One JSON line per concurrency goes to stdout.
The TF Serving gRPC client imports TensorFlow (its protos live there), which is why this is a child.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

MARK = "SPOTDIFF_LOAD "
PROTOCOLS = ("rest-tfserving", "rest-kserve", "grpc-tfserving", "grpc-kserve", "flask")
WARMUP_PER_WORKER = 3


def _image() -> np.ndarray:
    return np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)  # (1, 28, 28, 1)


def _rest_sender(url: str, body: bytes, answer_key: str) -> Callable[[], Callable[[], bool]]:
    """POSTs over the standard library's http.client, one keep-alive connection per worker (as a
    client pool holds them): the leanest maintained Python client, so that the latencies are as much
    the server's as a Python client can make them. Every REST server, Flask's included, gets it."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    headers = {"content-type": "application/json"}

    def make():
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

        def send() -> bool:
            try:
                connection.request("POST", parts.path, body=body, headers=headers)
                response = connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionError):  # the server closed a kept-alive one
                connection.close()
                connection.request("POST", parts.path, body=body, headers=headers)
                response = connection.getresponse()
            payload = response.read()
            return response.status == 200 and answer_key in json.loads(payload)

        return send

    return make


def _senders(spec: dict) -> Callable[[], Callable[[], bool]]:
    """A factory of per-worker `send() -> ok` callables for the spec's protocol."""
    name, image, protocol = spec["model"], _image(), spec["protocol"]
    rest, flask = f"http://127.0.0.1:{spec.get('rest_port')}", f"http://127.0.0.1:{spec.get('flask_port')}"
    instances = json.dumps({"instances": image.tolist()}).encode()
    if protocol == "rest-tfserving":
        return _rest_sender(f"{rest}/v1/models/{name}:predict", instances, "predictions")
    if protocol == "flask":
        return _rest_sender(f"{flask}/predict/{name}", instances, "predictions")
    if protocol == "rest-kserve":
        tensor = {
            "name": "images",
            "shape": list(image.shape),
            "datatype": "FP32",
            "data": image.ravel().tolist(),
        }
        return _rest_sender(
            f"{rest}/v2/models/{name}/infer", json.dumps({"inputs": [tensor]}).encode(), "outputs"
        )
    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{spec['grpc_port']}")  # thread-safe, shared by workers
    if protocol == "grpc-tfserving":
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = name, "serving_default"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(image))
        return lambda: lambda: len(stub.Predict(request, timeout=30).outputs["logits"].tensor_content) == 40
    if protocol == "grpc-kserve":
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        tensor = service_pb2.ModelInferRequest.InferInputTensor(
            name="images", datatype="FP32", shape=image.shape
        )
        request = service_pb2.ModelInferRequest(
            model_name=name, inputs=[tensor], raw_input_contents=[image.astype("<f4").tobytes()]
        )
        return lambda: lambda: len(stub.ModelInfer(request, timeout=30).raw_output_contents[0]) == 40
    raise ValueError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS}")


def closed_loop(make_sender, concurrency: int, max_requests: int, duration_s: float) -> dict:
    """Run `concurrency` closed-loop workers until `max_requests` are sent or `duration_s` passes."""
    senders = [make_sender() for _ in range(concurrency)]
    for send in senders:  # warm-up: connections open, server paths compiled; not timed
        for _ in range(WARMUP_PER_WORKER):
            try:
                send()
            except Exception:  # noqa: BLE001 - a failing server shows up as errors in the timed part
                break
    lock, tickets = threading.Lock(), [max_requests]
    latencies: list[list[float]] = [[] for _ in senders]  # successful requests only
    failed = [0] * concurrency
    start = time.perf_counter()
    deadline = start + duration_s

    def worker(index: int) -> None:
        send, mine = senders[index], latencies[index]
        while time.perf_counter() < deadline:
            with lock:
                if tickets[0] <= 0:
                    return
                tickets[0] -= 1
            sent = time.perf_counter()
            try:
                ok = send()
            except Exception:  # noqa: BLE001 - a refused or failed request is counted, never fatal to the run
                ok = False
            if ok:
                mine.append(time.perf_counter() - sent)
            else:
                failed[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall_s = time.perf_counter() - start
    return summarise(
        [x for chunk in latencies for x in chunk], int(sum(failed)), wall_s, concurrency,
        "requests" if tickets[0] <= 0 else "duration",
    )


def summarise(
    latencies_s: list[float], failed: int, wall_s: float, concurrency: int, stopped_by: str
) -> dict:
    """One measurement: failed requests are counted apart and left out of the percentiles and the
    throughput (a fast error is not a fast answer); with no successful request there are no figures."""
    done_ms = np.array(latencies_s) * 1e3
    p50, p90, p99 = (float(p) for p in np.percentile(done_ms, [50, 90, 99])) if len(done_ms) else (None,) * 3
    return {
        "concurrency": concurrency,
        "requests": len(done_ms) + failed,
        "succeeded": len(done_ms),
        "failed": failed,
        "wall_s": wall_s,
        "throughput_rps": len(done_ms) / wall_s if wall_s > 0 and len(done_ms) else None,
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "stopped_by": stopped_by,
    }


def main(argv: list[str]) -> int:
    """Spec: models, protocols, concurrency, requests, duration_s and the ports; one line per measurement."""
    with open(argv[0], encoding="utf-8") as handle:
        spec = json.load(handle)
    for model in spec["models"]:
        for protocol in spec["protocols"]:
            try:
                make_sender = _senders({**spec, "model": model, "protocol": protocol})
            except Exception as error:  # noqa: BLE001 - e.g. a client library missing: that protocol fails, the rest run
                line = {"model": model, "protocol": protocol, "error": f"{type(error).__name__}: {error}"}
                print(MARK + json.dumps(line), flush=True)
                continue
            for concurrency in spec["concurrency"]:
                row = closed_loop(make_sender, concurrency, spec["requests"], spec["duration_s"])
                print(MARK + json.dumps({"model": model, "protocol": protocol, **row}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
