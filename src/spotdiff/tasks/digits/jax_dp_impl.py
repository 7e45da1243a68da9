"""Data-parallel digit CNN in JAX: one process per worker joined by `jax.distributed.initialize`
(a coordinator on a loopback port; gloo carries the CPU collectives), a one-axis device mesh
over the workers, and jax_impl's `nnx.jit` train step run on a global batch sharded along that
axis. Parameters and optimizer state are replicated; XLA's SPMD partitioner inserts the gradient
all-reduce itself, as in JAX's "Distributed arrays and automatic parallelization" and Flax's
data-parallel guides. The model and the evaluation are jax_impl's.
"""

from __future__ import annotations

import time

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from spotdiff.hparams import native_kwargs
from spotdiff.tasks.digits.jax_impl import build_model, evaluate, neutral, train_step

ENGINE = "jax.distributed + sharded jit"


def replicate(tree, sharding: NamedSharding):
    """Host values that are equal in every process -> global arrays replicated over the mesh."""
    def one(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):  # dropout keys: replicate their raw data
            impl = jax.random.key_impl(x)
            raw = jax.make_array_from_process_local_data(sharding, np.asarray(jax.random.key_data(x)))
            return jax.random.wrap_key_data(raw, impl=impl)
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))
    return jax.tree.map(one, tree)


def to_host(tree):
    """Replicated global arrays -> numpy (this process's copy)."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def train(ctx, params, data) -> dict:
    """Train `params.epochs` epochs in this process; every process returns its timings and losses."""
    start = time.perf_counter()
    jax.distributed.initialize(ctx.coordinator, num_processes=ctx.world, process_id=ctx.rank)
    mesh = jax.make_mesh((ctx.world,), ("data",))  # one device per process
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))  # (B, ...) split over the workers
    replicated = NamedSharding(mesh, PartitionSpec())
    jax.block_until_ready(replicate(np.zeros(()), replicated) + 0)  # the first collective: the group is up
    group_init_s, ready_walltime = time.perf_counter() - start, time.time()
    jax.config.update("jax_default_matmul_precision", "highest")  # as backends/jax/env.configure

    model = build_model(params, data, params.init, seed=ctx.seed, dropout=ctx.dropout)
    optimizer = nnx.Optimizer(
        model, optax.sgd(**native_kwargs("jax", "sgd", params.optimizer_hparams())), wrt=nnx.Param
    )
    graphdef, state = nnx.split((model, optimizer))
    model, optimizer = nnx.merge(graphdef, replicate(state, replicated))
    epoch_s, losses = [], []
    for epoch in range(params.epochs):
        shards = ctx.epoch_shard(data["epoch_order"][epoch], params.batch_size)  # (steps, B/N)
        start = time.perf_counter()
        epoch_losses = []
        for index in shards:
            images = jax.make_array_from_process_local_data(
                batch_sharding, data["x_train"][index][..., None]
            )  # global (B, 28, 28, 1)
            labels = jax.make_array_from_process_local_data(
                batch_sharding, data["y_train"][index]
            )  # global (B,)
            epoch_losses.append(train_step(model, optimizer, images, labels))
        jax.block_until_ready(epoch_losses)
        epoch_s.append(time.perf_counter() - start)
        losses += [float(to_host(v)) for v in epoch_losses]  # the global batch's loss; after the clock
    final = neutral(model, params.model, to_host(nnx.state(model, nnx.Param)))
    result = {
        "engine": ENGINE,
        "backend": f"{jax.config.jax_cpu_collectives_implementation} (CPU collectives)",
        "versions": {"jax": jax.__version__},
        "settings": {"device": str(jax.local_devices()[0]), "matmul_precision": "highest"},
        "group_init_s": group_init_s,
        "group_ready_walltime": ready_walltime,
        "images_per_epoch": ctx.images_per_epoch(data, params.batch_size),
        "epoch_s": epoch_s,
        "losses": losses,
        "loss_scope": "global",
        "param_count": int(sum(x.size for x in final.values())),
        "weights": final,
    }
    if ctx.rank == 0:  # every process holds the same weights; one evaluates, on a local copy
        local = build_model(params, {f"w:{k}": v for k, v in final.items()}, "shared", dropout=False)
        result["test_loss"], result["test_accuracy"], _ = evaluate(local, data["x_test"], data["y_test"])
    jax.distributed.shutdown()
    return result
