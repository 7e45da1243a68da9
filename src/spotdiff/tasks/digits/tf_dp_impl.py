"""Data-parallel digit CNN in TensorFlow: tf.distribute.MultiWorkerMirroredStrategy, one worker
process per rank, TF_CONFIG naming every worker on a loopback port, a custom training loop.

Why a custom loop and not model.fit: Keras 3's fit under MultiWorkerMirroredStrategy fails before
the first step (its symbolic build `strategy.reduce`s a PerReplica batch, which MWMS's collective
reduce cannot convert: "Attempt to convert a value (PerReplica...)", Keras 3.x, TF 2.21). The loop
below is the one TensorFlow's "Custom training loop with MultiWorkerMirroredStrategy" tutorial
teaches: `strategy.run` of a GradientTape step inside a tf.function, the loss averaged over the
*global* batch with `tf.nn.compute_average_loss`, and Keras' optimizer all-reducing (summing) the
gradients across workers. The model and the evaluation are tf_impl's.
"""

from __future__ import annotations

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from spotdiff.backends.tensorflow import env
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.digits.tf_impl import build_model, evaluate, neutral

ENGINE = "MultiWorkerMirroredStrategy"


def make_shard_dataset(data, shards: np.ndarray) -> tf.data.Dataset:
    """This worker's batches: `shards` (steps, B/N) indices, every epoch in a row."""
    images = tf.constant(data["x_train"][..., None])  # (N, 28, 28, 1)
    labels = tf.constant(data["y_train"])
    batches = tf.data.Dataset.from_tensor_slices(shards)  # each element: (B/N,) indices
    return batches.map(lambda index: (tf.gather(images, index), tf.gather(labels, index))).prefetch(
        tf.data.AUTOTUNE
    )


def train(ctx, params, data) -> dict:
    """Train `params.epochs` epochs in this worker; every worker returns its timings and losses."""
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": ctx.worker_addresses},
            "task": {"type": "worker", "index": ctx.rank},
        }
    )
    settings = env.configure(
        ctx.threads, ctx.seed + ctx.rank, ctx.plan.device
    )  # dropout masks differ per rank
    keras.utils.set_random_seed(ctx.seed + ctx.rank)
    start = time.perf_counter()
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
        )
    )  # NCCL on GPUs, ring on CPUs
    group_init_s, ready_walltime = time.perf_counter() - start, time.time()

    with strategy.scope():
        model = build_model(params, data, params.init, dropout=ctx.dropout)
        optimizer = keras.optimizers.SGD(**native_kwargs("tensorflow", "sgd", params.optimizer_hparams()))
    per_example_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    @tf.function
    def train_step(iterator) -> tf.Tensor:
        def step_fn(images, labels):
            with tf.GradientTape() as tape:
                losses = per_example_loss(labels, model(images, training=True))  # (B/N,)
                loss = tf.nn.compute_average_loss(losses, global_batch_size=params.batch_size)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))  # all-reduce (sum) inside
            return tf.reduce_mean(losses)  # this worker's shard

        return strategy.experimental_local_results(strategy.run(step_fn, args=next(iterator)))[0]

    shards = np.concatenate([ctx.epoch_shard(order, params.batch_size) for order in data["epoch_order"]])
    steps = len(shards) // params.epochs
    # Each worker feeds its own shard: the input pipeline is not auto-sharded again.
    iterator = iter(strategy.distribute_datasets_from_function(lambda _: make_shard_dataset(data, shards)))
    epoch_s, losses = [], []
    for _ in range(params.epochs):
        start = time.perf_counter()
        epoch_losses = [train_step(iterator) for _ in range(steps)]
        env.sync()
        epoch_s.append(time.perf_counter() - start)
        losses += [float(v) for v in epoch_losses]  # fetched after the clock stopped
    final = neutral(model, params.model)
    result = {
        "engine": ENGINE,
        "backend": "collective ops (gRPC, ring)",
        "versions": env.versions(),
        "settings": settings,
        "group_init_s": group_init_s,
        "group_ready_walltime": ready_walltime,
        "images_per_epoch": ctx.images_per_epoch(data, params.batch_size),
        "epoch_s": epoch_s,
        "losses": losses,
        "loss_scope": "shard",
        "param_count": model.count_params(),
        "weights": final,
    }
    if ctx.rank == 0:  # every worker holds the same weights; one evaluates, on a plain copy
        plain = build_model(params, {f"w:{k}": v for k, v in final.items()}, "shared", dropout=False)
        result["test_loss"], result["test_accuracy"], _ = evaluate(plain, data["x_test"], data["y_test"])
    # A last collective: no worker leaves (and ends its part of the cluster) before all are done.
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)
    return result
