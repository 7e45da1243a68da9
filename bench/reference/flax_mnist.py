"""A plain Flax NNX script in the style of Flax's MNIST tutorial: an nnx.Module CNN, nnx.Optimizer,
an @nnx.jit train step over numpy batches."""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import load, report
from flax import nnx


class CNN(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 10, kernel_size=(5, 5), padding="VALID", rngs=rngs)
        self.conv2 = nnx.Conv(10, 20, kernel_size=(5, 5), padding="VALID", rngs=rngs)
        self.conv2_drop = nnx.Dropout(0.5, broadcast_dims=(1, 2), rngs=rngs)
        self.linear1 = nnx.Linear(320, 50, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.linear2 = nnx.Linear(50, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(nnx.max_pool(self.conv1(x), (2, 2), (2, 2)))
        x = nnx.relu(nnx.max_pool(self.conv2_drop(self.conv2(x)), (2, 2), (2, 2)))
        x = x.reshape(x.shape[0], -1)
        return self.linear2(self.dropout(nnx.relu(self.linear1(x))))


def loss_fn(model, batch):
    logits = model(batch["image"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()


@nnx.jit
def train_step(model, optimizer, batch):
    loss, grads = nnx.value_and_grad(loss_fn)(model, batch)
    optimizer.update(model, grads)
    return loss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    args = parser.parse_args()
    data = load()
    model = CNN(rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(args.lr, args.momentum), wrt=nnx.Param)
    rng = np.random.default_rng(0)
    n = len(data["y_train"])
    epoch_s = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        order = rng.permutation(n)
        for i in range(0, n, args.batch_size):
            index = order[i:i + args.batch_size]
            loss = train_step(
                model,
                optimizer,
                {"image": data["x_train"][index][..., None], "label": data["y_train"][index]},
            )
        jax.block_until_ready(loss)
        epoch_s.append(time.perf_counter() - start)
    model.eval()
    accuracy = float((model(jnp.asarray(data["x_test"][..., None])).argmax(1) == data["y_test"]).mean())
    report(epoch_s, n, accuracy)


if __name__ == "__main__":
    main()
