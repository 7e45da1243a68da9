"""The serving process, a child of `spotdiff serve`: `python -m spotdiff.serve.server ROOT HOST REST GRPC`.

Loads every model under ROOT (this is where TensorFlow, JAX, onnxruntime and PyTorch get imported:
never in the CLI parent), then serves TF Serving + KServe v2 over REST (uvicorn, Starlette) and,
unless GRPC is 0, over gRPC, from one model registry. A user error (a busy port) is one line
`spotdiff: error: ...` on stderr and exit code 2, which the parent passes on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from spotdiff.errors import UserError


def serve(root: Path, host: str, rest_port: int, grpc_port: int) -> None:
    """Bind gRPC (a busy port fails before any model loads), load, tune, then serve until stopped."""
    # keep the console for errors: TensorFlow's info lines and grpc core's log of a failed bind
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    import uvicorn

    from spotdiff.serve.app import build_app
    from spotdiff.serve.models import load_models
    from spotdiff.serve.tuning import freeze_loaded_objects

    models: dict = {}  # one registry: REST and gRPC share the models and their locks
    grpc_server = None
    if grpc_port:
        from spotdiff.serve.grpc_server import build_grpc_server

        grpc_server = build_grpc_server(models, host, grpc_port)  # binds now: a busy port fails fast
    models.update(load_models(root))
    freeze_loaded_objects()  # the Flask baseline gets the same call (spotdiff.serve.flask_baseline)
    if grpc_server is not None:
        grpc_server.start()
    try:
        uvicorn.run(build_app(root, models), host=host, port=rest_port, log_level="warning")
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=1).wait()


def main(argv: list[str]) -> int:
    root, host, rest_port, grpc_port = Path(argv[0]), argv[1], int(argv[2]), int(argv[3])
    try:
        serve(root, host, rest_port, grpc_port)
    except UserError as error:
        print(f"spotdiff: error: {error}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
