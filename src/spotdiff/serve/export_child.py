"""One framework's exports, run as a child process: `python -m spotdiff.serve.export_child REQUEST_JSON`.

The request names the cell directory (with `cell.json` and `weights.npz`), the model root, the
version and the formats; one JSON line per artefact goes to stdout. The in-process reference model
is rebuilt from the same neutral weights, so parity compares the artefact with its own framework.
Each framework's export code is its `export_digits` in `spotdiff/backends/<fw>/export.py`; this
child imports only the cell's framework's.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np

from spotdiff.tasks.digits.spec import DigitsParams, test_images


def exporter(framework: str):
    """`export_digits(params, neutral, images, root, version, formats)` of `framework`: yields rows."""
    return importlib.import_module(f"spotdiff.backends.{framework}.export").export_digits


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    cell_dir, root = Path(request["cell_dir"]), Path(request["out"])
    cell = json.loads((cell_dir / "cell.json").read_text())
    params = DigitsParams(**cell["params"])
    with np.load(cell_dir / "weights.npz") as npz:
        neutral = {k: npz[k] for k in npz.files}
    images, _ = test_images(params, cell["seed"])
    images = images.astype(np.float32)
    for row in exporter(cell["framework"])(
        params, neutral, images, root, request["version"], request["formats"]
    ):
        row.update(cell=cell["id"], framework=cell["framework"], test_images=len(images))
        print("SPOTDIFF_EXPORT " + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
