"""Keras 3 side of `spotdiff port`: a user's model walked, given canonical weights (kernels HWIO
and (in, out), GRU gates z, r, h, attention kernels (d, heads, head_dim)), aligned and recorded by
intercepting each layer's `call`. Same functions in every backends/<fw>/port.py: configure, build,
layout, vocab, describe, export, load, apply, record. Training steps use tf.GradientTape: Keras on
the TensorFlow backend (other backends: not recorded yet)."""

from __future__ import annotations

import functools
from typing import Any, Callable

import keras
import numpy as np

from spotdiff.port import canonical
from spotdiff.port.loading import FactoryError, call_factory, labels_for

KINDS = {
    "Dense": "dense",
    "Conv2D": "conv2d",
    "BatchNormalization": "batchnorm",
    "LayerNormalization": "layernorm",
    "Embedding": "embedding",
    "GRU": "gru",
    "MultiHeadAttention": "attention",
    "ReLU": "relu",
    "Flatten": "flatten",
    "Dropout": "dropout",
}
COMPOSITE = ("GRU", "MultiHeadAttention")
_state: dict[str, Any] = {}


def configure(threads: int, seed: int, model_spec: dict[str, Any]) -> dict[str, str]:
    from spotdiff.backends.keras import env

    env.configure(threads, seed, "cpu")
    # Keras maps float64 results to float32 off TensorFlow (see env.computing_in): the float64 run
    # must stay float64 (a float32 run never makes float64 values, so this child keeps it on).
    from keras.src.backend.common import dtypes

    getattr(dtypes, "BIT64_TO_BIT32_DTYPE", {})["float64"] = "float64"
    return env.versions()


def _inputs_for(model: keras.Model, inputs: list[np.ndarray], dtype: str) -> Any:
    xs = [x.astype(dtype) if x.dtype.kind == "f" else x for x in inputs]
    return xs[0] if len(xs) == 1 else xs


def build(model_spec: dict[str, Any], dtype: str, settings: dict[str, dict[str, Any]]) -> keras.Model:
    """The factory's model in `dtype`, built by one call on the input when the input is known."""
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    reset_after = next((s["gru_reset_after"] for s in settings.values() if "gru_reset_after" in s), None)
    original = keras.layers.GRU.__init__
    if reset_after is not None:  # a structural setting: the layer is built with it
        def forced(self, *args, **kwargs):  # over whatever the user's code passes
            original(self, *args, **{**kwargs, "reset_after": bool(reset_after)})

        keras.layers.GRU.__init__ = forced
    try:
        model = call_factory(model_spec["path"], model_spec["factory"])
    finally:
        keras.layers.GRU.__init__ = original
    if not isinstance(model, keras.Model):
        raise FactoryError(f"{model_spec['factory']} returned {type(model).__name__}, not a keras.Model")
    if "inputs" in _state and not model.built:
        model(_inputs_for(model, _state["inputs"], dtype), training=False)
    return model


def kind_of(layer: keras.layers.Layer) -> str:
    name = type(layer).__name__
    if name == "Activation":
        return getattr(layer.activation, "__name__", "activation")
    return KINDS.get(name, "other" if layer.weights else name.lower())


def leaves(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Layers without sublayers, and the composite kinds whole, by their Keras names."""
    found, inside = {}, set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if id(layer) in inside or type(layer).__name__ == "InputLayer":
            continue
        subs = list(layer._flatten_layers(include_self=False, recursive=True))
        if type(layer).__name__ in COMPOSITE:
            inside |= {id(s) for s in subs}
            found[layer.name] = layer
        elif not subs:
            found[layer.name] = layer
    return found


def layout(model: keras.Model) -> str | None:
    convs = [la for la in leaves(model).values() if type(la).__name__ == "Conv2D"]
    if not convs:
        return None
    return "nhwc" if convs[0].data_format == "channels_last" else "nchw"


def vocab(model: keras.Model) -> int | None:
    sizes = [la.input_dim for la in leaves(model).values() if type(la).__name__ == "Embedding"]
    return min(sizes) if sizes else None


def _config(layer: keras.layers.Layer, kind: str) -> dict[str, Any]:
    if kind == "batchnorm":
        return {"eps": layer.epsilon, "momentum_new": 1.0 - layer.momentum}
    if kind == "layernorm":
        return {"eps": layer.epsilon}
    if kind == "gru":
        return {"reset_after": bool(layer.cell.reset_after)}
    if kind == "conv2d":
        return {"padding": layer.padding, "stride": list(layer.strides)}
    if kind == "attention":
        return {"heads": layer.num_heads}
    if kind == "gelu":
        return {"approximate": "none"}
    return {}


def _intercept(
    layers: dict[str, keras.layers.Layer], sink: Callable[[str, Any, Any], None]
) -> Callable[[], None]:
    """Every layer's call reports (name, input, output) to `sink`; dense and conv layers report
    their output before a fused activation (PyTorch has it as a layer of its own); dropout is off."""

    def wrap(name, layer):
        original = layer.call

        def call(*args, **kwargs):
            if type(layer).__name__ == "Dropout":
                kwargs["training"] = False
            activation = getattr(layer, "activation", None) if kind_of(layer) in ("dense", "conv2d") else None
            if activation is not None:
                object.__setattr__(layer, "activation", None)
            try:
                out = original(*args, **kwargs)
            finally:
                if activation is not None:
                    object.__setattr__(layer, "activation", activation)
            sink(name, args[0] if args else None, out[0] if isinstance(out, (list, tuple)) else out)
            return activation(out) if activation is not None else out

        object.__setattr__(layer, "call", call)

    for name, layer in layers.items():
        wrap(name, layer)
    return lambda: [layer.__dict__.pop("call", None) for layer in layers.values()]


def describe(model: keras.Model, inputs: list[np.ndarray]) -> list[dict[str, Any]]:
    _state["inputs"] = inputs
    layers, called = leaves(model), {}

    def sink(name, x, out):
        called.setdefault(name, (list(getattr(x, "shape", [])), list(out.shape)))

    restore = _intercept(layers, sink)
    try:
        model(_inputs_for(model, inputs, keras.config.floatx()), training=False)
    finally:
        restore()
    order = list(called) + [n for n in layers if n not in called and kind_of(layers[n]) != "dropout"]
    return [
        {
            "name": n,
            "kind": kind_of(layers[n]),
            "in_shape": [d or 0 for d in called.get(n, ([], []))[0]],
            "out_shape": [d or 0 for d in called.get(n, ([], []))[1]],
            "config": _config(layers[n], kind_of(layers[n])),
        }
        for n in order
    ]


def _variables(layer: keras.layers.Layer, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(native params by role, native buffers by role) of one layer."""
    if kind in ("dense", "conv2d"):
        return {k: getattr(layer, k) for k in ("kernel", "bias") if getattr(layer, k, None) is not None}, {}
    if kind in ("batchnorm", "layernorm"):
        params = {k: getattr(layer, k) for k in ("gamma", "beta") if getattr(layer, k, None) is not None}
        stats = (
            {"moving_mean": layer.moving_mean, "moving_variance": layer.moving_variance}
            if kind == "batchnorm"
            else {}
        )
        return params, stats
    if kind == "embedding":
        return {"embeddings": layer.embeddings}, {}
    if kind == "gru":
        return {k: getattr(layer.cell, k) for k in ("kernel", "recurrent_kernel", "bias")}, {}
    if kind == "attention":
        parts = {
            "q": layer._query_dense,
            "k": layer._key_dense,
            "v": layer._value_dense,
            "out": layer._output_dense,
        }
        return {f"{p}_{k}": getattr(d, k) for p, d in parts.items() for k in ("kernel", "bias")}, {}
    return {v.name: v for v in layer.trainable_weights}, {}


def to_canonical(kind: str, native: dict[str, np.ndarray], flatten_chw=None) -> dict[str, np.ndarray]:
    """Native arrays of one layer (params, their gradients or buffers) -> canonical."""
    if kind == "dense":
        return {
            "weight": canonical.dense_from_native(native["kernel"], flatten_chw),
            **({"bias": native["bias"]} if "bias" in native else {}),
        }
    if kind == "conv2d":
        return {
            "weight": canonical.conv_from_native(native["kernel"]),
            **({"bias": native["bias"]} if "bias" in native else {}),
        }
    if kind in ("batchnorm", "layernorm"):
        names = {
            "gamma": "weight",
            "beta": "bias",
            "moving_mean": "running_mean",
            "moving_variance": "running_var",
        }
        return {names[k]: v for k, v in native.items()}
    if kind == "embedding":
        return {"weight": native["embeddings"]}
    if kind == "gru":
        return canonical.gru_from_keras(native["kernel"], native["recurrent_kernel"], native["bias"])
    if kind == "attention":
        return canonical.attention_from_native(native)
    return dict(native)


def to_native(kind: str, values: dict[str, np.ndarray], layer, flatten_chw=None) -> dict[str, np.ndarray]:
    """The inverse of `to_canonical` (a GRU's bias in the shape the layer has)."""
    if kind == "dense":
        return {
            "kernel": canonical.dense_to_native(values["weight"], flatten_chw),
            **({"bias": values["bias"]} if "bias" in values else {}),
        }
    if kind == "conv2d":
        return {
            "kernel": canonical.conv_to_native(values["weight"]),
            **({"bias": values["bias"]} if "bias" in values else {}),
        }
    if kind in ("batchnorm", "layernorm"):
        names = {
            "weight": "gamma",
            "bias": "beta",
            "running_mean": "moving_mean",
            "running_var": "moving_variance",
        }
        return {names[k]: v for k, v in values.items()}
    if kind == "embedding":
        return {"embeddings": values["weight"]}
    if kind == "gru":
        kernel, recurrent, bias = canonical.gru_to_keras(values, bool(layer.cell.reset_after))
        return {"kernel": kernel, "recurrent_kernel": recurrent, "bias": bias}
    if kind == "attention":
        return canonical.attention_to_native(values, layer.num_heads)
    return dict(values)


def _numpy(value: Any) -> np.ndarray:
    if type(value).__name__ == "IndexedSlices":  # an embedding's gradient on TensorFlow
        import tensorflow as tf

        value = tf.convert_to_tensor(value)
    return np.asarray(keras.ops.convert_to_numpy(value)).copy()


def export(
    model: keras.Model, names: list[str], flatten: dict
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    layers, found = leaves(model), {}
    for name in names:
        kind = kind_of(layers[name])
        params, stats = _variables(layers[name], kind)
        found[name] = {
            "params": to_canonical(kind, {k: _numpy(v) for k, v in params.items()}, flatten.get(name)),
            "buffers": to_canonical(kind, {k: _numpy(v) for k, v in stats.items()}) if stats else {},
        }
    return found


def load(model: keras.Model, weights: dict[str, dict[str, np.ndarray]], flatten: dict) -> None:
    layers = leaves(model)
    for name, values in weights.items():
        layer, kind = layers[name], kind_of(layers[name])
        params, stats = _variables(layer, kind)
        variables = {**params, **stats}
        for key, value in to_native(kind, values, layer, flatten.get(name)).items():
            if tuple(variables[key].shape) != value.shape:
                raise ValueError(
                    f"{name}.{key}: the model has {tuple(variables[key].shape)}, the weights {value.shape}"
                )
            variables[key].assign(value.astype(variables[key].dtype))


def _pad_before(layer: keras.layers.Layer, padding: list[int]) -> None:
    """A conv with the source's explicit symmetric padding instead of 'same'."""
    original = layer.call
    ph, pw = padding

    def call(inputs, *args, **kwargs):
        pads = (
            [(0, 0), (ph, ph), (pw, pw), (0, 0)]
            if layer.data_format == "channels_last"
            else [(0, 0), (0, 0), (ph, ph), (pw, pw)]
        )
        return original(keras.ops.pad(inputs, pads), *args, **kwargs)

    layer.padding = "valid"
    object.__setattr__(layer, "call", call)


def apply(model: keras.Model, settings: dict[str, dict[str, Any]], request: dict[str, Any]) -> set[str]:
    layers, honoured = leaves(model), set()
    for name, wanted in settings.items():
        layer = layers[name]
        for key, value in wanted.items():
            if key in ("layernorm_eps", "batchnorm_eps"):
                layer.epsilon = value
            elif key == "batchnorm_momentum":
                layer.momentum = 1.0 - value
            elif key == "gru_reset_after" and bool(layer.cell.reset_after) == bool(value):
                pass  # built with it (see build)
            elif key == "gelu" and kind_of(layer) == "gelu":
                layer.activation = functools.partial(keras.activations.gelu, approximate=value == "tanh")
            elif key == "same_padding" and not isinstance(value, str):
                _pad_before(layer, list(value))
            else:
                continue
            honoured.add(key)
    return honoured


def make_optimizer(o: dict[str, Any]) -> keras.optimizers.Optimizer:
    name, lr = o["name"], o["lr"]
    classes = {
        "sgd": keras.optimizers.SGD,
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
    }
    if o["native"]:
        return classes[name](learning_rate=lr)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=o["momentum"])
    if name in ("adam", "adamw"):
        extra = {"weight_decay": o["weight_decay"]} if name == "adamw" else {}
        return classes[name](
            learning_rate=lr, beta_1=o["beta1"], beta_2=o["beta2"], epsilon=o["eps"], **extra
        )
    return keras.optimizers.RMSprop(learning_rate=lr, rho=o["rho"], epsilon=o["eps"])


def _loss(out: Any, training: dict[str, Any]) -> Any:
    """The mean square of the output, or cross-entropy against `labels_for` its shape."""
    out = out[0] if isinstance(out, (list, tuple)) else out
    if training.get("loss") != "cross_entropy":
        return keras.ops.mean(keras.ops.square(out))
    labels = labels_for(tuple(out.shape), training["seed"])[..., None]
    return -keras.ops.mean(keras.ops.take_along_axis(keras.ops.log_softmax(out, axis=-1), labels, axis=-1))


def _loss_and_grads(model: keras.Model, xs: Any, trainable: list, outputs: dict,
                    training: dict[str, Any]) -> tuple[Any, list]:
    """The loss and one gradient per trainable variable, the backend's own way; the running
    statistics updated as a training call updates them; layer outputs land in `outputs`."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = _loss(model(xs, training=True), training)
        return loss, tape.gradient(loss, trainable)
    if backend == "torch":
        import torch

        loss = _loss(model(xs, training=True), training)
        return loss, list(torch.autograd.grad(loss, [v.value for v in trainable], allow_unused=True))
    import jax

    others = model.non_trainable_variables

    def loss_fn(values, other_values):
        captured = {}
        kept = dict(outputs)
        out, new_others = model.stateless_call(values, other_values, xs, training=True)
        captured.update({k: v for k, v in outputs.items() if k not in kept})
        outputs.clear()
        outputs.update(kept)
        return _loss(out, training), (captured, new_others)

    (loss, (captured, new_others)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        [v.value for v in trainable], [v.value for v in others])
    outputs.update(captured)
    for variable, value in zip(others, new_others):
        variable.assign(value)
    return loss, grads


def record(
    model: keras.Model,
    inputs: list[np.ndarray],
    steps: int,
    optimizer: dict[str, Any],
    names: list[str],
    flatten: dict,
    dtype: str,
) -> list[dict[str, Any]]:
    """`steps` training steps on the mean square of the output, on the backend Keras runs on."""
    layers, outputs = leaves(model), {}
    watched = {n: layers[n] for n in names}
    restore = _intercept(watched, lambda name, x, out: outputs.setdefault(name, out))
    opt = make_optimizer(optimizer)
    trainable = model.trainable_variables
    xs = _inputs_for(model, inputs, dtype)
    found = []
    try:
        for _ in range(steps):
            outputs.clear()
            loss, grads = _loss_and_grads(model, xs, trainable, outputs, optimizer)
            grad_of = {id(v): g for v, g in zip(trainable, grads)}
            grad_rows = {}
            for name, layer in watched.items():
                kind = kind_of(layer)
                params, _ = _variables(layer, kind)
                if params:
                    native = {
                        k: _numpy(grad_of[id(v)]) if grad_of.get(id(v)) is not None else np.zeros(v.shape)
                        for k, v in params.items()
                    }
                    grad_rows[name] = to_canonical(kind, native, flatten.get(name))
            opt.apply_gradients(zip(grads, trainable))
            values = {}
            for name, layer in watched.items():
                kind = kind_of(layer)
                params, stats = _variables(layer, kind)
                if params:
                    values[name] = {
                        **to_canonical(kind, {k: _numpy(v) for k, v in params.items()}, flatten.get(name)),
                        **(to_canonical(kind, {k: _numpy(v) for k, v in stats.items()}) if stats else {}),
                    }
            found.append(
                {
                    "forward": {n: _numpy(v) for n, v in outputs.items()},
                    "loss": _numpy(loss),
                    "grads": grad_rows,
                    "values": values,
                }
            )
    finally:
        restore()
    return found
