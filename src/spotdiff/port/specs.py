"""Model and input specs of `spotdiff port`, parsed and checked in the parent (no framework import).

Bad specs raise UserError: one line, exit 2 (see the package docstring for the formats).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from spotdiff.errors import UserError

FRAMEWORKS = ("torch", "keras", "flax")
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
_INPUT = re.compile(r"^(float16|float32|float64|bfloat16|int32|int64)\[(\d+(?:,\d+)*)\](?::vocab=(\d+))?$")


@dataclass(frozen=True)
class ModelSpec:
    """`torch:path/to/file.py:Factory`, `keras@jax:path:Factory`, `flax:path:Factory`."""

    framework: str  # torch | keras | flax
    backend: str  # the framework a Keras model runs on; the framework itself otherwise
    path: str  # absolute path of the Python file
    factory: str
    text: str  # as the user wrote it

    @property
    def label(self) -> str:
        return (
            self.framework
            if self.framework != "keras" or self.backend == "tensorflow"
            else f"keras@{self.backend}"
        )

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def parse_model(text: str) -> ModelSpec:
    """A model spec, its file checked to exist."""
    head, _, rest = text.partition(":")
    path, _, factory = rest.rpartition(":")
    framework, _, backend = head.partition("@")
    if framework not in FRAMEWORKS or not path or not factory.isidentifier():
        raise UserError(
            f"model {text!r}: expected FRAMEWORK:PATH:FACTORY with FRAMEWORK one of "
            f"{', '.join(FRAMEWORKS)} (keras@BACKEND for Keras on jax or torch)"
        )
    if backend and (framework != "keras" or backend not in KERAS_BACKENDS):
        raise UserError(f"model {text!r}: only keras takes @BACKEND, one of {', '.join(KERAS_BACKENDS)}")
    file = Path(path)
    if not file.is_file():
        raise UserError(f"model {text!r}: file {path} does not exist")
    backend = backend or ("tensorflow" if framework == "keras" else framework)
    return ModelSpec(framework, backend, str(file.resolve()), factory, text)


@dataclass(frozen=True)
class InputSpec:
    """One model input: a dtype and shape to draw (seeded), or one array of an .npz file."""

    dtype: str
    shape: tuple[int, ...]
    vocab: int | None = None  # integer inputs: values in [0, vocab); None: detected from an embedding
    npz: str | None = None  # an .npz of real inputs (all its arrays, in order)

    def to_json(self) -> dict:
        return {"dtype": self.dtype, "shape": list(self.shape), "vocab": self.vocab, "npz": self.npz}


def parse_inputs(texts: list[str]) -> list[InputSpec]:
    """Every `--input`: `float32[8,3,32,32]`, `int32[8,16]`, `int32[8,16]:vocab=100` or `FILE.npz`."""
    if not texts:
        raise UserError("--input is required: e.g. --input float32[8,3,32,32] (the source's layout)")
    found = []
    for text in texts:
        compact = text.replace(" ", "")
        if compact.endswith(".npz"):
            if not Path(compact).is_file():
                raise UserError(f"--input {text!r}: file does not exist")
            found.append(InputSpec("npz", (), npz=str(Path(compact).resolve())))
            continue
        match = _INPUT.match(compact)
        if not match:
            raise UserError(
                f"--input {text!r}: expected DTYPE[D0,D1,...] (e.g. float32[8,3,32,32], "
                "int32[8,16]:vocab=100) or a .npz file"
            )
        dtype, dims, vocab = match.groups()
        shape = tuple(int(d) for d in dims.split(","))
        if min(shape) < 1:
            raise UserError(f"--input {text!r}: every dimension must be at least 1")
        if vocab is not None and not dtype.startswith("int"):
            raise UserError(f"--input {text!r}: vocab= is for integer inputs")
        found.append(InputSpec(dtype, shape, int(vocab) if vocab else None))
    return found
