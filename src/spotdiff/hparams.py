"""Neutral hyper-parameter names -> each framework's own argument names (no framework import).

One map for the defaults audit and for tasks that pass optimiser settings (`--hparams`): a task
keeps neutral values (`lr`, `rho`, `eps`, ...) and asks `native_kwargs` for the keyword arguments
of one framework. A native name is a string, `None` (the framework has no such argument), or
`(name, {neutral value: native value})` where the spelling of a value differs too.
`"betas[0]"` / `"betas[1]"` are the two halves of PyTorch's `betas` tuple.
"""

from __future__ import annotations

from typing import Any

NativeName = str | tuple[str, dict[Any, Any]] | None

TORCH_INIT = "reset_parameters()"  # PyTorch declares initialisers in code, not in arguments
REQUIRED = "<required>"  # what `declared()` reports for an argument without a default


def _same(name: str) -> dict[str, NativeName]:
    return {"torch": name, "tensorflow": name, "jax": name}


def _names(torch: NativeName, tensorflow: NativeName, jax: NativeName) -> dict[str, NativeName]:
    return {"torch": torch, "tensorflow": tensorflow, "jax": jax}


LR = _names("lr", "learning_rate", "learning_rate")
EPS = _names("eps", "epsilon", "eps")
SGD = {
    "lr": LR, "momentum": _same("momentum"), "nesterov": _same("nesterov"),
    "weight_decay": _names("weight_decay", "weight_decay", None),
}
ADAM = {
    "lr": LR, "beta1": _names("betas[0]", "beta_1", "b1"), "beta2": _names("betas[1]", "beta_2", "b2"),
    "eps": EPS, "weight_decay": _names("weight_decay", "weight_decay", None),
    "amsgrad": _names("amsgrad", "amsgrad", None),
}
LAYER_INIT = {
    "kernel_init": _names(TORCH_INIT, "kernel_initializer", "kernel_init"),
    "bias_init": _names(TORCH_INIT, "bias_initializer", "bias_init"),
}
RNN = {
    "use_bias": _names("bias", "use_bias", None),
    "activation": _names(None, "activation", "activation_fn"),
    "gate_activation": _names(None, "recurrent_activation", "gate_fn"),
    "batch_major": _names("batch_first", None, None),  # Keras and Flax RNNs are batch-major
    **LAYER_INIT,
    "recurrent_init": _names(TORCH_INIT, "recurrent_initializer", "recurrent_kernel_init"),
}

NAMES: dict[str, dict[str, dict[str, NativeName]]] = {
    "sgd": SGD,
    "sgd-nesterov": SGD,
    "rmsprop": {
        "lr": LR, "rho": _names("alpha", "rho", "decay"), "eps": EPS,
        "momentum": _same("momentum"), "centered": _same("centered"),
        "eps_in_sqrt": _names(None, None, "eps_in_sqrt"),
    },
    "adam": ADAM,
    "adam-wd": ADAM,
    "adamw": {**ADAM, "weight_decay": _same("weight_decay")},
    "adagrad": {
        "lr": LR, "initial_accumulator": _same("initial_accumulator_value"), "eps": EPS,
    },
    "dense": {"use_bias": _names("bias", "use_bias", "use_bias"), **LAYER_INIT},
    "conv2d": {
        "padding": _names("padding", "padding", ("padding", {"valid": "VALID", "same": "SAME"})),
        "strides": _names("stride", "strides", "strides"),
        "use_bias": _names("bias", "use_bias", "use_bias"), **LAYER_INIT,
    },
    "lstm": {**RNN, "unit_forget_bias": _names(None, "unit_forget_bias", None)},
    "gru": {**RNN, "reset_after": _names(None, "reset_after", None)},
    "batchnorm": {
        "momentum": _same("momentum"), "eps": _names("eps", "epsilon", "epsilon"),
        "scale_init": _names(TORCH_INIT, "gamma_initializer", "scale_init"),
    },
    "dropout": {"rate": _names("p", "rate", "rate")},
    "embedding": {"embedding_init": _names(TORCH_INIT, "embeddings_initializer", "embedding_init")},
    "cross-entropy": {
        "from_logits": _names(None, "from_logits", None),  # PyTorch and Optax always take logits
        "reduction": _names("reduction", ("reduction", {"mean": "sum_over_batch_size"}), "reduction"),
        "ignore_index": _names("ignore_index", "ignore_class", None),
        "label_smoothing": _names("label_smoothing", None, None),
    },
}


def native_name(component: str, neutral: str, framework: str) -> str | None:
    """The argument name `framework` uses for `neutral` in `component`, or None."""
    entry = NAMES[component].get(neutral, {}).get(framework)
    return entry[0] if isinstance(entry, tuple) else entry


def native_kwargs(framework: str, component: str, values: dict[str, Any]) -> dict[str, Any]:
    """Neutral values -> keyword arguments of `framework`; names it lacks raise ValueError.

    >>> native_kwargs("torch", "rmsprop", {"rho": 0.9, "eps": 1e-7})
    {'alpha': 0.9, 'eps': 1e-07}
    """
    kwargs: dict[str, Any] = {}
    for neutral, value in values.items():
        entry = NAMES[component].get(neutral, {}).get(framework)
        if entry is None:
            raise ValueError(f"{framework} {component} has no argument for {neutral!r}")
        name, spelling = entry if isinstance(entry, tuple) else (entry, {})
        value = spelling.get(value, value)
        if name.endswith("]"):  # "betas[0]": one half of a tuple argument
            base, index = name[:-1].split("[")
            pair = list(kwargs.get(base, (None, None)))
            pair[int(index)] = value
            kwargs[base] = tuple(pair)
        else:
            kwargs[name] = value
    for name, value in kwargs.items():
        if isinstance(value, tuple) and None in value:
            raise ValueError(f"{framework} {component}: {name} needs both halves set")
    return kwargs


def unsupported(framework: str, component: str, values: dict[str, Any]) -> list[str]:
    """The neutral names in `values` that `framework` has no argument for."""
    return [k for k in values if NAMES[component].get(k, {}).get(framework) is None]


def declared_value(component: str, neutral: str, framework: str, declared: dict[str, Any]) -> Any:
    """The default `framework` declares for `neutral` (read from its `declared()` answer), in
    neutral spelling; None when it has no such argument or the argument is required."""
    entry = NAMES[component].get(neutral, {}).get(framework)
    if entry is None:
        return None
    name, spelling = entry if isinstance(entry, tuple) else (entry, {})
    if name.endswith("]"):
        base, index = name[:-1].split("[")
        pair = declared.get(base)
        value = pair[int(index)] if isinstance(pair, (list, tuple)) else None
    else:
        value = declared.get(name)
    if value == REQUIRED:
        return None
    reverse = {v: k for k, v in spelling.items()}
    return reverse.get(value, value) if isinstance(value, str) else value
