"""Flax NNX side of `spotdiff port`: a user's nnx.Module walked (in call order: NNX keeps its
attributes sorted by name), given canonical weights (kernels HWIO and (in, out), attention kernels
(d, heads, head_dim)), aligned and recorded by intercepting each layer class's `__call__`. Same
functions in every backends/<fw>/port.py: configure, build, layout, vocab, describe, export, load,
apply, record."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from spotdiff.port import canonical
from spotdiff.port.loading import FactoryError, call_factory, labels_for

KINDS = {
    "Linear": "dense",
    "Conv": "conv2d",
    "BatchNorm": "batchnorm",
    "LayerNorm": "layernorm",
    "Embed": "embedding",
    "MultiHeadAttention": "attention",
    "Dropout": "dropout",
}
COMPOSITE = ("MultiHeadAttention", "RNN")  # recorded as one layer, their inner modules not
ROLES = {  # kind -> canonical name -> the module's attribute path
    "dense": {"weight": "kernel", "bias": "bias"},
    "conv2d": {"weight": "kernel", "bias": "bias"},
    "batchnorm": {"weight": "scale", "bias": "bias"},
    "layernorm": {"weight": "scale", "bias": "bias"},
    "embedding": {"weight": "embedding"},
    # nnx.RNN over a GRUCell: gates r, z, n as PyTorch; the stock cell's dense_h has no bias
    "gru": {"weight_ih": "cell.dense_i.kernel", "bias_ih": "cell.dense_i.bias",
            "weight_hh": "cell.dense_h.kernel", "bias_hh": "cell.dense_h.bias"},
    "attention": {
        f"{p}_{k}": f"{m}.{k}"
        for p, m in (("q", "query"), ("k", "key"), ("v", "value"), ("out", "out"))
        for k in ("kernel", "bias")
    },
}
STATS = {"batchnorm": {"running_mean": "mean", "running_var": "var"}}
_state: dict[str, Any] = {}


def configure(threads: int, seed: int, model_spec: dict[str, Any]) -> dict[str, str]:
    from spotdiff.backends.jax import env

    jax.config.update("jax_enable_x64", True)  # the float64 run; float32 arrays stay float32
    env.configure(threads, seed, "cpu")
    _state["seed"] = seed
    return {**env.versions(), "flax": __import__("flax").__version__}


def build(model_spec: dict[str, Any], dtype: str, settings: dict[str, dict[str, Any]]) -> nnx.Module:
    model = call_factory(model_spec["path"], model_spec["factory"], rngs=nnx.Rngs(_state.get("seed", 0)))
    if not isinstance(model, nnx.Module):
        raise FactoryError(f"{model_spec['factory']} returned {type(model).__name__}, not a flax.nnx.Module")
    target = jnp.float64 if dtype == "float64" else jnp.float32
    for _, module in nnx.iter_modules(model):  # what a module creates on the fly (an RNN's carry)
        if hasattr(module, "param_dtype"):
            module.param_dtype = target
        if getattr(module, "dtype", None) is not None:
            module.dtype = target
    for kind in (nnx.Param, nnx.BatchStat):
        state = nnx.state(model, kind)
        nnx.update(
            model,
            jax.tree.map(lambda x: x.astype(target) if jnp.issubdtype(x.dtype, jnp.floating) else x, state),
        )
    return model


def kind_of(module: nnx.Module) -> str:
    name = type(module).__name__
    if name == "Conv" and module.kernel.value.ndim != 4:
        return "other"
    if name == "RNN" and isinstance(module.cell, nnx.GRUCell):
        return "gru"
    has_params = bool(jax.tree.leaves(nnx.state(module, nnx.Param)))
    return KINDS.get(name, "other" if has_params else name.lower())


def leaves(model: nnx.Module) -> dict[str, nnx.Module]:
    """Modules without submodules, and the composite kinds whole (NNX lists children first)."""
    modules = {".".join(map(str, path)): m for path, m in nnx.iter_modules(model) if path}
    inside = [name for name, m in modules.items() if type(m).__name__ in COMPOSITE]
    return {name: m for name, m in modules.items()
            if not any(name.startswith(f"{outer}.") for outer in inside)
            and (name in inside or sum(1 for _ in nnx.iter_modules(m)) == 1)}


def layout(model: nnx.Module) -> str | None:
    return "nhwc" if any(kind_of(m) == "conv2d" for m in leaves(model).values()) else None


def vocab(model: nnx.Module) -> int | None:
    sizes = [m.num_embeddings for m in leaves(model).values() if type(m).__name__ == "Embed"]
    return min(sizes) if sizes else None


def _config(module: nnx.Module, kind: str) -> dict[str, Any]:
    if kind == "batchnorm":
        return {"eps": module.epsilon, "momentum_new": 1.0 - module.momentum}
    if kind == "layernorm":
        return {"eps": module.epsilon}
    if kind == "gru":
        return {"reset_after": True}
    if kind == "conv2d":
        padding = module.padding
        return {
            "padding": padding if isinstance(padding, str) else [p[0] for p in padding],
            "stride": list(module.strides) if not isinstance(module.strides, int) else [module.strides] * 2,
        }
    if kind == "attention":
        return {"heads": module.num_heads}
    return {}


@contextmanager
def _intercept(model: nnx.Module, names: set[str] | None, sink):
    """Every leaf layer's __call__ reports (name, input, output) while inside; the names are
    looked up by identity at call time (NNX transforms call copies of the modules)."""
    layers = leaves(model)
    classes = {type(m) for n, m in layers.items() if names is None or n in names}
    by_id = {id(m): n for n, m in layers.items() if names is None or n in names}
    originals = {cls: cls.__call__ for cls in classes}

    def wrap(original):
        def call(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            if id(self) in by_id:
                sink(by_id[id(self)], args[0] if args else None, out[0] if isinstance(out, tuple) else out)
            return out

        return call

    for cls, original in originals.items():
        cls.__call__ = wrap(original)
    calls = {"gelu": 0}
    exact_gelu = jax.nn.gelu

    def gelu(x, approximate=True, **kwargs):  # a function, not a module, in Flax: a layer of its own
        name = "gelu" if not calls["gelu"] else f"gelu_{calls['gelu']}"
        calls["gelu"] += 1
        approximate = _state.get("gelu", {}).get(name, approximate)  # aligned to the source's
        out = exact_gelu(x, approximate=approximate, **kwargs)
        if names is None or name in names:
            sink(name, x, out)
        return out

    jax.nn.gelu = nnx.gelu = gelu
    try:
        yield by_id
    finally:
        jax.nn.gelu = nnx.gelu = exact_gelu
        for cls, original in originals.items():
            cls.__call__ = original


def _jnp(inputs: list[np.ndarray], dtype: str) -> list[jax.Array]:
    return [jnp.asarray(x.astype(dtype) if x.dtype.kind == "f" else x) for x in inputs]


def describe(model: nnx.Module, inputs: list[np.ndarray]) -> list[dict[str, Any]]:
    called = {}

    def sink(name, x, out):
        called.setdefault(name, (list(getattr(x, "shape", [])), list(out.shape)))

    model.eval()
    with _intercept(model, None, sink):
        model(*_jnp(inputs, "float32"))
    layers = leaves(model)
    order = list(called) + [n for n in layers if n not in called and kind_of(layers[n]) != "dropout"]
    return [
        {
            "name": n,
            "kind": kind_of(layers[n]) if n in layers else "gelu",  # else: a gelu function call
            "in_shape": called.get(n, ([], []))[0],
            "out_shape": called.get(n, ([], []))[1],
            "config": _config(layers[n], kind_of(layers[n])) if n in layers else {},
        }
        for n in order
    ]


def _variables(module: nnx.Module, kind: str) -> tuple[dict[str, nnx.Variable], dict[str, nnx.Variable]]:
    """(canonical param -> variable, canonical buffer -> variable); `other` layers by raw name."""

    def get(path):
        node = module
        for part in path.split("."):
            node = getattr(node, part, None)
        return node

    if kind in ROLES:
        params = {k: get(p) for k, p in ROLES[kind].items() if get(p) is not None}
        stats = {k: get(p) for k, p in STATS.get(kind, {}).items()}
        return params, stats
    return {".".join(map(str, path)): v for path, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}, {}


def to_canonical(kind: str, native: dict[str, np.ndarray], flatten_chw=None) -> dict[str, np.ndarray]:
    out = dict(native)
    if kind == "gru":
        out.update({k: np.ascontiguousarray(native[k].T) for k in ("weight_ih", "weight_hh")})
    elif kind == "dense":
        out["weight"] = canonical.dense_from_native(native["weight"], flatten_chw)
    elif kind == "conv2d":
        out["weight"] = canonical.conv_from_native(native["weight"])
    elif kind == "attention":
        out = canonical.attention_from_native(native)
    return out


def to_native(kind: str, values: dict[str, np.ndarray], module, flatten_chw=None) -> dict[str, np.ndarray]:
    out = dict(values)
    if kind == "gru":
        out.update({k: np.ascontiguousarray(values[k].T) for k in ("weight_ih", "weight_hh")})
    elif kind == "dense":
        out["weight"] = canonical.dense_to_native(values["weight"], flatten_chw)
    elif kind == "conv2d":
        out["weight"] = canonical.conv_to_native(values["weight"])
    elif kind == "attention":
        out = canonical.attention_to_native(values, module.num_heads)
    return out


def _value(variable: Any) -> np.ndarray:
    return np.asarray(getattr(variable, "value", variable)).copy()


def export(model: nnx.Module, names: list[str], flatten: dict) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    layers, found = leaves(model), {}
    for name in (n for n in names if n in layers):  # not the gelu calls: no parameters
        kind = kind_of(layers[name])
        params, stats = _variables(layers[name], kind)
        found[name] = {
            "params": to_canonical(kind, {k: _value(v) for k, v in params.items()}, flatten.get(name)),
            "buffers": {k: _value(v) for k, v in stats.items()},
        }
    return {name: found.get(name, {"params": {}, "buffers": {}}) for name in names}


def load(model: nnx.Module, weights: dict[str, dict[str, np.ndarray]], flatten: dict) -> None:
    layers = leaves(model)
    for name, values in weights.items():
        module, kind = layers[name], kind_of(layers[name])
        params, stats = _variables(module, kind)
        variables = {**params, **stats}
        for key, value in to_native(kind, values, module, flatten.get(name)).items():
            have = variables[key].value
            if tuple(have.shape) != value.shape:
                raise ValueError(
                    f"{name}.{key}: the model has {tuple(have.shape)}, the weights {value.shape}"
                )
            variables[key].value = jnp.asarray(value, dtype=have.dtype)


def apply(model: nnx.Module, settings: dict[str, dict[str, Any]], request: dict[str, Any]) -> set[str]:
    layers, honoured = leaves(model), set()
    _state["gelu"] = {}
    for name, wanted in settings.items():
        module = layers.get(name)
        for key, value in wanted.items():
            if key in ("layernorm_eps", "batchnorm_eps"):
                module.epsilon = value
            elif key == "batchnorm_momentum":
                module.momentum = 1.0 - value
            elif key == "same_padding" and not isinstance(value, str):
                module.padding = [(p, p) for p in value]
            elif key == "gelu" and module is None:  # a gelu call: its approximation as the source's
                _state.setdefault("gelu", {})[name] = value == "tanh"
            else:
                continue
            honoured.add(key)
    return honoured


def make_optimizer(o: dict[str, Any]) -> optax.GradientTransformation:
    name, lr = o["name"], o["lr"]
    if o["native"]:
        return {"sgd": optax.sgd, "adam": optax.adam, "adamw": optax.adamw, "rmsprop": optax.rmsprop}[name](
            lr
        )
    if name == "sgd":
        return optax.sgd(lr, momentum=o["momentum"] or None)
    if name == "adam":
        return optax.adam(lr, b1=o["beta1"], b2=o["beta2"], eps=o["eps"])
    if name == "adamw":
        return optax.adamw(lr, b1=o["beta1"], b2=o["beta2"], eps=o["eps"], weight_decay=o["weight_decay"])
    return optax.rmsprop(lr, decay=o["rho"], eps=o["eps"])


def _per_layer(model: nnx.Module, names: list[str], flatten: dict, with_stats: bool) -> dict[str, dict]:
    layers, found = leaves(model), {}
    for name in (n for n in names if n in layers):  # not the gelu calls: no parameters
        kind = kind_of(layers[name])
        params, stats = _variables(layers[name], kind)
        if params:
            found[name] = to_canonical(kind, {k: _value(v) for k, v in params.items()}, flatten.get(name))
            if with_stats:
                found[name].update({k: _value(v) for k, v in stats.items()})
    return found


def _loss(out: jax.Array, training: dict[str, Any]) -> jax.Array:
    """The mean square of the output, or cross-entropy against `labels_for` its shape."""
    if training.get("loss") != "cross_entropy":
        return jnp.mean(out**2)
    labels = jnp.asarray(labels_for(tuple(out.shape), training["seed"]))[..., None]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out, axis=-1), labels, axis=-1))


def record(
    model: nnx.Module,
    inputs: list[np.ndarray],
    steps: int,
    optimizer: dict[str, Any],
    names: list[str],
    flatten: dict,
    dtype: str,
) -> list[dict[str, Any]]:
    """`steps` training steps (eager jax.value_and_grad) on the mean square of the output."""
    model.train()
    for module in leaves(model).values():
        if type(module).__name__ == "Dropout":
            module.deterministic = True  # no random masks: the frameworks could not draw the same ones
    xs = _jnp(inputs, dtype)
    tx = make_optimizer(optimizer)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = tx.init(params)
    wanted = set(names)

    def loss_fn(p, others):
        m = nnx.merge(graphdef, p, others, copy=True)  # fresh variables, mutable inside this trace
        captured = {}
        with _intercept(m, wanted, lambda name, x, out: captured.setdefault(name, out)):
            out = m(*xs)
        out = out[0] if isinstance(out, tuple) else out
        return _loss(out, optimizer), (captured, nnx.state(m, nnx.BatchStat))

    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))  # one compile, both steps
    found = []
    for _ in range(steps):
        (loss, (captured, stats)), grads = step(params, rest)
        grad_rows = _per_layer(nnx.merge(graphdef, grads, rest), names, flatten, with_stats=False)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        nnx.update(model, params)
        nnx.update(model, stats)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        found.append(
            {
                "forward": {n: np.asarray(v) for n, v in captured.items()},
                "loss": np.asarray(loss),
                "grads": grad_rows,
                "values": _per_layer(model, names, flatten, with_stats=True),
            }
        )
    return found
