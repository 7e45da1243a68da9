"""The peer baseline: a minimal Flask endpoint around the same models, on waitress.

`python -m spotdiff.serve.flask_baseline MODEL_ROOT PORT [NAME ...]` serves
`POST /predict/<name>` with `{"instances": [...]}` -> `{"predictions": [...]}` (the body TF Serving's
REST API takes, so the load generator sends the same bytes) and `GET /health`. It is the endpoint
the post has in mind ("Flask or another alternative"): parse JSON, call the model, return JSON, no
validation beyond that. Served by waitress, the pure-Python production WSGI server Flask's own
deployment docs list, with its default four threads: Flask's dev server warns against production
use, and gunicorn's pre-fork workers would load one copy of the model per worker. It gets the same
process tuning as `spotdiff serve` (`spotdiff.serve.tuning`) and, in the load test, the same CPUs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from flask import Flask, jsonify, request

from spotdiff.serve.models import load_models
from spotdiff.serve.tuning import freeze_loaded_objects


def build_flask_app(models) -> Flask:
    app = Flask("spotdiff-flask-baseline")

    @app.get("/health")
    def health():
        return jsonify(ready=True)

    @app.post("/predict/<name>")
    def predict(name: str):
        if name not in models:
            return jsonify(error=f"model {name!r} not found"), 404
        model = models[name][max(models[name])]
        images = np.asarray(request.get_json()["instances"], dtype=np.float32)  # (N, 28, 28, 1)
        logits = model.run(
            images
        )  # under the model's lock, as in the spotdiff server (TFLite is not thread-safe)
        return jsonify(predictions=logits.tolist())

    return app


def main(argv: list[str]) -> int:
    import waitress

    root, port, names = Path(argv[0]), int(argv[1]), set(argv[2:])
    models = {n: v for n, v in load_models(root).items() if not names or n in names}
    freeze_loaded_objects()  # the tuning `spotdiff serve` gets, so that the comparison is of the servers
    waitress.serve(build_flask_app(models), host="127.0.0.1", port=port, _quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
