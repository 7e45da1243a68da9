"""PyTorch side of `spotdiff port`: a user's nn.Module walked, given canonical weights (PyTorch's
own layout), aligned and recorded with forward hooks. Same functions in every backends/<fw>/port.py:
configure, build, layout, vocab, describe, export, load, apply, record."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from spotdiff.port.loading import FactoryError, call_factory, labels_for

KINDS = (
    (nn.Linear, "dense"),
    (nn.Conv2d, "conv2d"),
    (nn.BatchNorm1d, "batchnorm"),
    (nn.BatchNorm2d, "batchnorm"),
    (nn.LayerNorm, "layernorm"),
    (nn.Embedding, "embedding"),
    (nn.GRU, "gru"),
    (nn.MultiheadAttention, "attention"),
    (nn.ReLU, "relu"),
    (nn.GELU, "gelu"),
    (nn.Flatten, "flatten"),
    (nn.Dropout, "dropout"),
    (nn.Tanh, "tanh"),
    (nn.Sigmoid, "sigmoid"),
)
COMPOSITE = (nn.GRU, nn.MultiheadAttention)  # recorded as one layer, their inner modules not
_settings: dict[str, Any] = {}


def configure(threads: int, seed: int, model_spec: dict[str, Any]) -> dict[str, str]:
    from spotdiff.backends.torch import env

    env.configure(threads, seed, "cpu")
    _settings["seed"] = seed
    return env.versions()


def build(model_spec: dict[str, Any], dtype: str, settings: dict[str, dict[str, Any]]) -> nn.Module:
    torch.manual_seed(_settings.get("seed", 0))
    model = call_factory(model_spec["path"], model_spec["factory"])
    if not isinstance(model, nn.Module):
        raise FactoryError(f"{model_spec['factory']} returned {type(model).__name__}, not a torch.nn.Module")
    return model.to(torch.float64 if dtype == "float64" else torch.float32)


def kind_of(module: nn.Module) -> str:
    for cls, kind in KINDS:
        if isinstance(module, cls):
            return kind
    return "other" if any(True for _ in module.parameters(recurse=False)) else type(module).__name__.lower()


def leaves(model: nn.Module) -> dict[str, nn.Module]:
    """Layers in definition order: modules without children, and the composite kinds whole."""
    found: dict[str, nn.Module] = {}
    inside: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(f"{outer}.") for outer in inside):
            continue
        if isinstance(module, COMPOSITE):
            inside.append(name)
            found[name] = module
        elif not any(True for _ in module.children()):
            found[name] = module
    return found


def layout(model: nn.Module) -> str | None:
    return "nchw" if any(isinstance(m, nn.Conv2d) for m in model.modules()) else None


def vocab(model: nn.Module) -> int | None:
    sizes = [m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)]
    return min(sizes) if sizes else None


def _first_tensor(value: Any, module: nn.Module) -> torch.Tensor:
    """A layer's output as compared: the first tensor, batch-first for recurrent and attention."""
    tensor = value[0] if isinstance(value, (tuple, list)) else value
    if isinstance(module, COMPOSITE) and not getattr(module, "batch_first", False):
        tensor = tensor.transpose(0, 1)  # (T, B, ...) -> (B, T, ...)
    return tensor


def _config(module: nn.Module, kind: str) -> dict[str, Any]:
    if kind == "batchnorm":
        return {"eps": module.eps, "momentum_new": module.momentum}
    if kind == "layernorm":
        return {"eps": module.eps}
    if kind == "gelu":
        return {"approximate": module.approximate}
    if kind == "gru":
        return {"reset_after": True}
    if kind == "conv2d":
        return {
            "padding": module.padding if isinstance(module.padding, str) else list(module.padding),
            "stride": list(module.stride),
        }
    if kind == "attention":
        return {"heads": module.num_heads}
    return {}


def _tensors(inputs: list[np.ndarray], dtype: torch.dtype) -> list[torch.Tensor]:
    return [
        torch.from_numpy(x).to(dtype) if x.dtype.kind == "f" else torch.from_numpy(x).long() for x in inputs
    ]


def describe(model: nn.Module, inputs: list[np.ndarray]) -> list[dict[str, Any]]:
    """Every layer in the order the forward pass calls it (uncalled ones after): name, kind,
    input and output shapes, config (epsilons, momentum convention, padding)."""
    layers, called = leaves(model), {}

    def hook(name):
        def record(module, args, output):
            if name not in called:
                shape = list(args[0].shape) if args and isinstance(args[0], torch.Tensor) else []
                called[name] = (shape, list(_first_tensor(output, module).shape))

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    try:
        model.eval()
        with torch.no_grad():
            model(*_tensors(inputs, torch.float32))
    finally:
        for handle in handles:
            handle.remove()
    order = list(called) + [n for n in layers if n not in called and kind_of(layers[n]) != "dropout"]
    return [
        {
            "name": n,
            "kind": kind_of(layers[n]),
            "in_shape": called.get(n, ([], []))[0],
            "out_shape": called.get(n, ([], []))[1],
            "config": _config(layers[n], kind_of(layers[n])),
        }
        for n in order
    ]


def _slots(module: nn.Module, kind: str) -> dict[str, tuple[torch.Tensor, slice | None]]:
    """Canonical param -> (the tensor holding it, the rows it takes)."""
    if kind == "gru":
        return {
            k: (getattr(module, f"{k}_l0"), None) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        }
    if kind == "attention":
        d = module.embed_dim
        found = {}
        for i, name in enumerate(("q", "k", "v")):
            found[f"{name}_weight"] = (module.in_proj_weight, slice(i * d, (i + 1) * d))
            found[f"{name}_bias"] = (module.in_proj_bias, slice(i * d, (i + 1) * d))
        found.update(out_weight=(module.out_proj.weight, None), out_bias=(module.out_proj.bias, None))
        return found
    if kind in ("dense", "conv2d", "batchnorm", "layernorm", "embedding"):
        return {
            k: (getattr(module, k), None) for k in ("weight", "bias") if getattr(module, k, None) is not None
        }
    return {k: (p, None) for k, p in module.named_parameters(recurse=False)}


def _buffers(module: nn.Module, kind: str) -> dict[str, torch.Tensor]:
    return (
        {"running_mean": module.running_mean, "running_var": module.running_var}
        if kind == "batchnorm" and module.running_mean is not None
        else {}
    )


def _numpy(tensor: torch.Tensor | None, rows: slice | None) -> np.ndarray | None:
    if tensor is None:
        return None
    return (tensor[rows] if rows is not None else tensor).detach().cpu().numpy().copy()


def export(model: nn.Module, names: list[str], flatten: dict) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    layers = leaves(model)
    return {
        n: {
            "params": {k: _numpy(t, rows) for k, (t, rows) in _slots(layers[n], kind_of(layers[n])).items()},
            "buffers": {k: _numpy(t, None) for k, t in _buffers(layers[n], kind_of(layers[n])).items()},
        }
        for n in names
    }


def load(model: nn.Module, weights: dict[str, dict[str, np.ndarray]], flatten: dict) -> None:
    layers = leaves(model)
    with torch.no_grad():
        for name, values in weights.items():
            module, kind = layers[name], kind_of(layers[name])
            targets = {**_slots(module, kind), **{k: (t, None) for k, t in _buffers(module, kind).items()}}
            for key, value in values.items():
                tensor, rows = targets[key]
                place = tensor[rows] if rows is not None else tensor
                if tuple(place.shape) != value.shape:
                    raise ValueError(
                        f"{name}.{key}: the model has {tuple(place.shape)}, the weights {value.shape}"
                    )
                place.copy_(torch.from_numpy(np.asarray(value)).to(tensor.dtype))


def apply(model: nn.Module, settings: dict[str, dict[str, Any]], request: dict[str, Any]) -> set[str]:
    """Align the named layers to the source's settings; the keys honoured."""
    layers, honoured = leaves(model), set()
    for name, wanted in settings.items():
        module = layers[name]
        for key, value in wanted.items():
            if key in ("layernorm_eps", "batchnorm_eps"):
                module.eps = value
            elif key == "batchnorm_momentum":
                module.momentum = value
            elif key == "gelu":
                module.approximate = value
            elif key == "same_padding" and not isinstance(value, str):
                module.padding = tuple(value)
            else:
                continue
            honoured.add(key)
    return honoured


def make_optimizer(params: list[torch.nn.Parameter], o: dict[str, Any]) -> torch.optim.Optimizer:
    name, lr = o["name"], o["lr"]
    if o["native"]:
        return {
            "sgd": torch.optim.SGD,
            "adam": torch.optim.Adam,
            "adamw": torch.optim.AdamW,
            "rmsprop": torch.optim.RMSprop,
        }[name](params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=o["momentum"])
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        extra = {"weight_decay": o["weight_decay"]} if name == "adamw" else {}
        return cls(params, lr=lr, betas=(o["beta1"], o["beta2"]), eps=o["eps"], **extra)
    return torch.optim.RMSprop(params, lr=lr, alpha=o["rho"], eps=o["eps"])


class BiasedRunningVar:
    """Makes a BatchNorm's running_var follow the biased batch variance, as Keras and Flax do
    (PyTorch uses the unbiased one): `fix()` after the backward pass rescales this step's update
    by (n - 1) / n (not in the forward hook: autograd keeps running_var for the backward)."""

    def __init__(self, module: nn.Module):
        self.module, self.before, self.count = module, None, None
        self.handles = [module.register_forward_pre_hook(self._pre)]

    def _pre(self, module, args):
        if self.before is None:
            self.before = module.running_var.detach().clone()
            self.count = args[0].numel() / args[0].shape[1]

    def fix(self) -> None:
        if self.before is None:
            return
        m, n = self.module.momentum, self.count
        with torch.no_grad():
            kept = (1 - m) * self.before
            self.module.running_var.copy_(kept + (self.module.running_var - kept) * (n - 1) / n)
        self.before = None


def _loss(out: torch.Tensor, training: dict[str, Any]) -> torch.Tensor:
    """The mean square of the output, or cross-entropy against `labels_for` its shape."""
    if training.get("loss") != "cross_entropy":
        return out.pow(2).mean()
    labels = torch.from_numpy(labels_for(tuple(out.shape), training["seed"]))
    return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), labels.reshape(-1))


def record(
    model: nn.Module,
    inputs: list[np.ndarray],
    steps: int,
    optimizer: dict[str, Any],
    names: list[str],
    flatten: dict,
    dtype: str,
) -> list[dict[str, Any]]:
    """`steps` training steps on the mean square of the output: per step every watched layer's
    output, the loss, every gradient and every value after the update (canonical layout)."""
    float_dtype = torch.float64 if dtype == "float64" else torch.float32
    layers = leaves(model)
    model.train()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.eval()  # no random masks: the frameworks could not draw the same ones
    outputs: dict[str, torch.Tensor] = {}
    handles, fixes = [], []
    for name in names:

        def hook(module, args, output, name=name):
            outputs.setdefault(name, _first_tensor(output, module).detach().clone())

        handles.append(layers[name].register_forward_hook(hook))
        if optimizer.get("bn_running_var") == "biased" and kind_of(layers[name]) == "batchnorm":
            fixes.append(BiasedRunningVar(layers[name]))
            handles += fixes[-1].handles
    opt = make_optimizer(list(model.parameters()), optimizer)
    xs = _tensors(inputs, float_dtype)
    found = []
    try:
        for _ in range(steps):
            outputs.clear()
            opt.zero_grad()
            out = _first_tensor(model(*xs), model)
            loss = _loss(out, optimizer)
            loss.backward()
            for fix in fixes:
                fix.fix()
            watched = {n: (layers[n], kind_of(layers[n])) for n in names}
            grads = {
                n: {k: _numpy(t.grad, rows) for k, (t, rows) in _slots(m, kind).items()}
                for n, (m, kind) in watched.items()
                if _slots(m, kind)
            }
            opt.step()
            values = {
                n: {
                    **{k: _numpy(t, rows) for k, (t, rows) in _slots(m, kind).items()},
                    **{k: _numpy(t, None) for k, t in _buffers(m, kind).items()},
                }
                for n, (m, kind) in watched.items()
                if _slots(m, kind)
            }
            found.append(
                {
                    "forward": {n: v.cpu().numpy() for n, v in outputs.items()},
                    "loss": loss.detach().cpu().numpy(),
                    "grads": grads,
                    "values": values,
                }
            )
    finally:
        for handle in handles:
            handle.remove()
    return found
