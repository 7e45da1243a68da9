"""The frameworks spotdiff knows, found without importing them (the parent never imports one)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Framework:
    name: str  # the name used on the command line and in results.json
    label: str  # how people write it
    module: str  # the Python module the worker imports
    distribution: str  # the pip distribution that carries it
    impl_prefix: str  # tasks/<task>/<impl_prefix>_impl.py


FRAMEWORKS: dict[str, Framework] = {
    "torch": Framework("torch", "PyTorch", "torch", "torch", "torch"),
    "tensorflow": Framework("tensorflow", "TensorFlow", "tensorflow", "tensorflow", "tf"),
    "jax": Framework("jax", "JAX", "jax", "jax", "jax"),
}

ALIASES = {"pytorch": "torch", "tf": "tensorflow"}


def canonical(name: str) -> str | None:
    """The canonical framework name for `name` (aliases accepted), or None if unknown."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in FRAMEWORKS else None


def installed_version(name: str) -> str | None:
    """The installed version of a framework, or None when it is not importable here."""
    framework = FRAMEWORKS[name]
    if importlib.util.find_spec(framework.module) is None:
        return None
    try:
        return importlib.metadata.version(framework.distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
