"""Data-parallel digit CNN in PyTorch: DistributedDataParallel over a process group (gloo on the
CPU, NCCL on a GPU), each rank loading its shard of every global batch through a DataLoader.

The model, step and evaluation are torch_impl's; only the process group, the DDP wrapper and the
sampler are new, as in pytorch/examples' distributed MNIST/ImageNet scripts.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler

from spotdiff.backends.torch import env, weights
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.digits.torch_impl import DigitImages, build_model, evaluate, make_step, train_epoch

ENGINE = "DistributedDataParallel"


class ShardSampler(Sampler):
    """DistributedSampler-style: this rank's shard of every global batch, epoch after epoch."""

    def __init__(self, shards: list[np.ndarray]):  # per epoch: (steps, B/N)
        self.shards, self.epoch = shards, 0

    def __len__(self) -> int:
        return self.shards[0].size

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        return iter(self.shards[epoch % len(self.shards)].reshape(-1).tolist())


def train(ctx, params, data) -> dict:
    """Train `params.epochs` epochs in this rank; every rank returns its timings and losses."""
    settings = env.configure(
        ctx.threads, ctx.seed + ctx.rank, ctx.plan.device
    )  # dropout masks differ per rank
    gpu = env.device().type == "cuda"
    start = time.perf_counter()
    dist.init_process_group(
        "nccl" if gpu else "gloo", init_method=f"tcp://{ctx.coordinator}", rank=ctx.rank, world_size=ctx.world
    )
    dist.barrier()
    group_init_s, ready_walltime = time.perf_counter() - start, time.time()

    model = build_model(params, data, params.init, dropout=ctx.dropout)
    ddp = DistributedDataParallel(model, device_ids=[env.device().index] if gpu else None)
    optimizer = torch.optim.SGD(ddp.parameters(), **native_kwargs("torch", "sgd", params.optimizer_hparams()))
    step = make_step(ddp, optimizer, "eager")  # DATA_PARALLEL_MODES: torch trains eager under DDP
    local_batch = params.batch_size // ctx.world
    shards = [ctx.epoch_shard(order, params.batch_size) for order in data["epoch_order"]]
    loader = DataLoader(
        DigitImages(data["x_train"], data["y_train"]), batch_size=local_batch, sampler=ShardSampler(shards)
    )
    epoch_s, losses = [], []
    for _ in range(params.epochs):
        start = time.perf_counter()
        epoch_losses, _input_s, _step_s = train_epoch(ddp, step, loader)
        env.sync()
        epoch_s.append(time.perf_counter() - start)
        losses += torch.stack(epoch_losses).tolist()  # this rank's shard; fetched after the clock
    result = {
        "engine": ENGINE,
        "backend": dist.get_backend(),
        "versions": env.versions(),
        "settings": settings,
        "group_init_s": group_init_s,
        "group_ready_walltime": ready_walltime,
        "images_per_epoch": ctx.images_per_epoch(data, params.batch_size),
        "epoch_s": epoch_s,
        "losses": losses,
        "loss_scope": "shard",
        "param_count": sum(p.numel() for p in model.parameters()),
        "weights": weights.to_neutral(dict(model.named_parameters())),
    }
    if ctx.rank == 0:  # every rank holds the same weights; one evaluates
        result["test_loss"], result["test_accuracy"], _ = evaluate(model, data["x_test"], data["y_test"])
    dist.destroy_process_group()
    return result
