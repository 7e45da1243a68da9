"""A user's model factory imported from its file, and the optimiser settings every child passes
(both neutral: the file imports its framework, this module none)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any, Callable

# Aligned hyper-parameters: passed explicitly in every framework (`--native` passes the lr only).
ALIGNED = {
    "sgd": {"momentum": 0.0},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    "adamw": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
    "rmsprop": {"rho": 0.9, "eps": 1e-7},
}
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}


def optimizer_settings(name: str, lr: float | None, native: bool, labels: bool = False,
                       seed: int = 0) -> dict[str, Any]:
    """How every child trains: {"name", "lr", "native", ...the aligned settings unless native,
    "loss": mean_square | cross_entropy, "seed"}."""
    return {"name": name, "lr": DEFAULT_LR[name] if lr is None else lr, "native": native,
            "loss": "cross_entropy" if labels else "mean_square", "seed": seed,
            **({} if native else ALIGNED[name])}


def labels_for(output_shape: tuple[int, ...], seed: int) -> Any:
    """Class labels for a (B, ..., C) output, the same in every framework: int64 (B, ...) drawn in
    [0, C) from `seed`."""
    import numpy as np

    return np.random.default_rng(seed + 1).integers(0, output_shape[-1], tuple(output_shape[:-1]))


def factory_from_file(path: str, name: str) -> Callable[..., Any]:
    """The class or function `name` of the Python file `path` (its folder importable, as when
    the user runs it)."""
    file = Path(path)
    sys.path.insert(0, str(file.parent))
    spec = importlib.util.spec_from_file_location(f"spotdiff_port_user_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, name):
        raise AttributeError(f"{file.name} has no {name}")
    return getattr(module, name)


class FactoryError(Exception):
    """The user's file or factory raised (bad input, not a spotdiff failure)."""


def call_factory(path: str, name: str, **kwargs: Any) -> Any:
    """`name` from the file `path`, called with `kwargs` (those it accepts); what the user's code
    raises comes out as FactoryError."""
    try:
        factory = factory_from_file(path, name)
        return factory(**{k: v for k, v in kwargs.items() if accepts(factory, k)})
    except Exception as error:
        raise FactoryError(f"the factory raised {type(error).__name__}: {error}") from error


def accepts(function: Callable[..., Any], argument: str) -> bool:
    if inspect.isclass(function):  # a class: its __init__ (a metaclass may hide the signature)
        function = function.__init__
    try:
        return argument in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
