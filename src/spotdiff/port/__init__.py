"""`spotdiff port`: check a port of YOUR model from one framework to another (no framework import here).

    spotdiff port torch:model.py:Net keras:model_keras.py:build_net --input float32[8,3,32,32]

Model spec: `FRAMEWORK[@BACKEND]:PATH:FACTORY`
- FRAMEWORK: `torch`, `keras` (Keras 3; backend `tensorflow` unless `keras@jax:...` / `keras@torch:...`),
  or `flax` (Flax NNX).
- PATH: a Python file, imported in the model's own child process (its folder goes on sys.path).
- FACTORY: a class or a function in that file returning the model, called with no arguments; for
  Flax NNX it is called with `rngs=nnx.Rngs(0)` when it accepts `rngs`. Keras models are built by one
  call on the input before their weights are set.

Input spec: `DTYPE[D0,D1,...]` in the SOURCE model's layout (`float32[8,3,32,32]` for a PyTorch conv
net); `int32[8,16]` for token ids, drawn in [0, vocab) with vocab the smallest embedding's row count,
or given: `int32[8,16]:vocab=100`; or a `.npz` file (its arrays, in order, are the inputs). Repeat
`--input` for models with several inputs. A 4-D input goes to a channels-last target (Keras with
data_format channels_last, Flax) transposed NCHW -> NHWC (`--layout` overrides the detection).

Layers: every model is walked in the order its forward pass calls its layers (layers never called
follow); each layer is exported as `(name, kind, {canonical param: numpy array})` in ONE neutral
layout, PyTorch's:

| kind        | canonical params (shapes)                                                           |
|-------------|-------------------------------------------------------------------------------------|
| dense       | weight (out, in), bias (out,)                                                       |
| conv2d      | weight (O, I, kh, kw) = OIHW, bias (O,)                                             |
| batchnorm   | weight, bias (C,); buffers running_mean, running_var (C,)                           |
| layernorm   | weight, bias (D,)                                                                   |
| embedding   | weight (vocab, dim)                                                                 |
| gru         | weight_ih (3u, in), weight_hh (3u, u), bias_ih, bias_hh (3u,); gates r, z, n        |
| attention   | q_weight, k_weight, v_weight (d, d) as (out, in), q_bias, k_bias, v_bias,           |
|             | out_weight (d, d), out_bias                                                         |
| other       | the framework's raw params by name (matched by order and shape, 2-D transposed)     |
| (no params) | relu, gelu, flatten, ...: matched by kind in call order, outputs compared; dropout  |
|             | is switched off; in Flax each `nnx.gelu` / `jax.nn.gelu` call is a layer `gelu[_N]` |

Layer outputs are compared in PyTorch's layout whatever the source (NCHW conv features, (C, H, W)
flatten order, a GRU's last hidden state (B, u), batch first); parameter names in every record
are the SOURCE's names (`fc1.weight`), so the report reads in the user's own terms. Flax: an
`nnx.RNN` over a `GRUCell` is one `gru` layer (dense_i, dense_h kernels and biases).

Matching pairs parametrised layers in call order by kind and canonical shape; `--map FILE`
(TOML, `[layers] "source_name" = "target_name"` or `{ target = "...", transform = "transpose" }`)
overrides it, `--dump-map FILE` writes the matching.

Modules: `specs` (parse model and input specs), `canonical` (neutral layouts per kind), `matching`
(source layers -> target layers), `child` (one model recorded in its own process, adapters in
`backends/{torch,keras,jax}/port.py`), `run` (the parent: record, then `locate`'s compare / verdict / causes),
`cli` (the verb).
"""
