"""The frameworks spotdiff knows, found without importing them (the parent never imports one)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    """A mode a framework declares once for every task it implements (instead of in each spec).

    `env` is set in the child before the framework is imported (e.g. which backend it runs on);
    `runs_on` names the framework this mode executes on, and `counterparts` that framework's task
    modes that execute the same way: the report compares the two ("X on Y" vs Y). `default`: in
    the default run (`spotdiff run` naming no task or mode) unless a task's spec chooses otherwise.
    """

    name: str
    help: str
    env: tuple[tuple[str, str], ...] = ()
    runs_on: str | None = None
    counterparts: tuple[str, ...] = ()
    default: bool = False


@dataclass(frozen=True)
class Framework:
    name: str  # the name used on the command line and in results.json
    label: str  # how people write it
    module: str  # the Python module the worker imports
    distribution: str  # the pip distribution that carries it
    impl_prefix: str  # tasks/<task>/<impl_prefix>_impl.py
    # Empty: each task's spec lists this framework's modes. Otherwise these are its modes in every
    # task that has a <impl_prefix>_impl.py (a task supports a framework iff that file exists).
    modes: tuple[Mode, ...] = ()

    def mode(self, name: str) -> Mode | None:
        """The declared mode `name`, or None (also for frameworks whose modes the specs list)."""
        return next((m for m in self.modes if m.name == name), None)

    def mode_env(self, name: str) -> dict[str, str]:
        """Environment variables the child sets before importing the framework, for mode `name`."""
        mode = self.mode(name)
        return dict(mode.env) if mode else {}


Counterparts = tuple[str, ...]


def backend_modes(
    env_var: str, switch: str, backends: dict[str, tuple[Counterparts, Counterparts]],
    default: tuple[str, ...] = (),
) -> tuple[Mode, ...]:
    """Modes of a framework that runs on other frameworks: per backend `b` (chosen with `env_var`),
    `b` with its compiler `switch` off and `b-jit` with it on. `backends` maps each backend to the
    counterparts (its own task modes that execute the same way) of the off and the on mode;
    `default` names the modes of the default run."""
    modes = []
    for backend, (off, on) in backends.items():
        for suffix, value, counterparts in (("", False, off), ("-jit", True, on)):
            like = " / ".join(counterparts)
            help_text = f"on {backend}, {switch}={value} (runs like {backend} {like})"
            name = f"{backend}{suffix}"
            modes.append(Mode(name, help_text, ((env_var, backend),), backend, counterparts, name in default))
    return tuple(modes)


FRAMEWORKS: dict[str, Framework] = {
    "torch": Framework("torch", "PyTorch", "torch", "torch", "torch"),
    "tensorflow": Framework("tensorflow", "TensorFlow", "tensorflow", "tensorflow", "tf"),
    "jax": Framework("jax", "JAX", "jax", "jax", "jax"),
    "keras": Framework("keras", "Keras", "keras", "keras", "keras", backend_modes(
        "KERAS_BACKEND", "jit_compile",
        {"jax": (("eager",), ("jit",)), "tensorflow": (("graph", "fit"), ("xla",)),
         "torch": (("eager",), ("compile",))},
        # Default run: what Keras does by default here (TensorFlow backend; jit_compile="auto" turns
        # XLA off on a CPU-only machine) and its fastest mode on the exponent (with XLA).
        default=("tensorflow", "tensorflow-jit"),
    )),
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
