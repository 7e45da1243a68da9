"""Digit CNN in PyTorch, the way pytorch/examples writes it: nn.Module, Dataset + DataLoader,
SGD with momentum; `compile` mode compiles the whole training step (forward, loss, backward and
the SGD update) with torch.compile, as TF `xla` and JAX `jit` compile theirs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from spotdiff import measure
from spotdiff.backends.torch import env, weights
from spotdiff.hparams import native_kwargs
from spotdiff.tasks.digits import common
from spotdiff.tasks.digits.board import DigitsBoard, embedded_test_images
from spotdiff.tasks.digits.spec import neutral_weights


class ExamplesNet(nn.Module):
    """pytorch/examples' MNIST net of the post's era."""

    def __init__(self, dropout: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(0.5 if dropout else 0.0)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)
        self.p_drop = 0.5 if dropout else 0.0

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, 50) penultimate
        x = F.relu(F.max_pool2d(self.conv1(x), 2))  # (B, 10, 12, 12)
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))  # (B, 20, 4, 4)
        x = torch.flatten(x, 1)  # (B, 320)
        return F.relu(self.fc1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, 10) logits
        x = F.dropout(self.features(x), p=self.p_drop, training=self.training)
        return self.fc2(x)


class LayersNet(nn.Module):
    """The tf.layers tutorial's net, written as a PyTorch module."""

    def __init__(self, dropout: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=5, padding="same")
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5, padding="same")
        self.fc1 = nn.Linear(7 * 7 * 64, 1024)
        self.fc2 = nn.Linear(1024, 10)
        self.dropout = nn.Dropout(0.4 if dropout else 0.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, 1024) penultimate
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 32, 14, 14)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 64, 7, 7)
        x = torch.flatten(x, 1)  # (B, 3136)
        return F.relu(self.fc1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, 10)
        return self.fc2(self.dropout(self.features(x)))


class DigitImages(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = torch.from_numpy(images).unsqueeze(1)  # (N, 1, 28, 28)
        self.labels = torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]


class EpochOrder(Sampler):
    """The task's per-epoch permutations, so every framework sees the same batches."""

    def __init__(self, order: np.ndarray):
        self.order, self.epoch = order, 0

    def __len__(self) -> int:
        return self.order.shape[1]

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        return iter(self.order[epoch % len(self.order)].tolist())


def build_model(params, data, init: str, seed: int = 0, dropout: bool = True) -> nn.Module:
    # seed: unused; PyTorch draws from its global generator, which run seeds (torch.manual_seed)
    model = (ExamplesNet if params.model == "pytorch-examples" else LayersNet)(dropout)
    if init == "shared":
        weights.load_neutral(model, neutral_weights(data))
    return model.to(env.device())


def debug_graph(params, data) -> tuple[nn.Module, tuple]:
    """What `spotdiff debug`'s graph probe traces: the CNN's forward, dropout off, on 8 training
    images (B, 1, 28, 28)."""
    model = build_model(params, data, "shared", dropout=False).eval()
    return model, (torch.from_numpy(data["x_train"][:8, None]),)


def evaluate(
    model, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000
) -> tuple[float, float, np.ndarray]:
    """Mean test loss, accuracy and predictions, in batches (MNIST's 10,000 images at once would
    hold about 1 GB of activations in the tf-layers net)."""
    model.eval()
    device = env.device()
    loss_sum, predictions = 0.0, []
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            logits = model(torch.from_numpy(images[start : start + batch_size]).unsqueeze(1).to(device))
            target = torch.from_numpy(labels[start : start + batch_size]).to(device)
            loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
            predictions.append(logits.argmax(1).cpu().numpy())
    predictions = np.concatenate(predictions)
    return loss_sum / len(labels), float((predictions == labels).mean()), predictions


def train_epoch(model, step, loader) -> tuple[list[torch.Tensor], float, float]:
    """One epoch: the step's losses (on the device), input_s (DataLoader + copy to the device)
    and step_s (the step, device synchronised)."""
    model.train()
    device = env.device()
    batches = ((images.to(device), labels.to(device)) for images, labels in loader)
    return measure.timed_epoch(batches, lambda batch: step(*batch), env.sync)


def parity_probe(params, data, cell_dir: Path, mode: str) -> str:
    """Shared init, dropout off, the task's batch order, through the cell's own mode:
    first-batch logits, every gradient, and the loss curve of one epoch. Runs after training, on
    its own model and optimiser (under `compile` its graphs are training's: the compile cache has them)."""
    model = build_model(params, data, "shared", dropout=False)
    forward = torch.compile(model) if mode == "compile" else model
    x, y = common.probe_batch(data, params.batch_size)
    logits = forward(torch.from_numpy(x).unsqueeze(1).to(env.device()))
    F.cross_entropy(logits, torch.from_numpy(y).to(env.device())).backward()
    grads = weights.to_neutral({n: p.grad for n, p in model.named_parameters()})
    sgd = native_kwargs("torch", "sgd", params.optimizer_hparams())
    optimizer = torch.optim.SGD(model.parameters(), **sgd)
    loader = DataLoader(
        DigitImages(data["x_train"], data["y_train"]),
        batch_size=params.batch_size,
        sampler=EpochOrder(data["epoch_order"][:1]),
    )
    losses, _, _ = train_epoch(model, make_step(model, optimizer, mode), loader)
    return common.save_probe(cell_dir, logits.detach().cpu().numpy(), grads, [float(v) for v in losses])


def make_step(model, optimizer, mode: str):
    """The training step; `compile`: torch.compile of the whole step. Dynamo breaks the graph at
    loss.backward(): forward + loss are one graph whose backward AOTAutograd compiles with it,
    and the SGD update is a second compiled graph."""

    def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return torch.compile(step) if mode == "compile" else step


def snapshot(
    model: nn.Module, architecture: str, probe: tuple[torch.Tensor, torch.Tensor]
) -> tuple[dict, dict]:
    """Neutral parameters and the probe batch's gradients, dropout off; leaves .grad and the RNG alone."""
    # architecture: unused; PyTorch's layout (NCHW, flatten C,H,W) is the neutral one
    model.eval()
    names, tensors = zip(*model.named_parameters())
    grads = torch.autograd.grad(F.cross_entropy(model(probe[0]), probe[1]), tensors)
    model.train()
    return weights.to_neutral(dict(zip(names, tensors))), weights.to_neutral(dict(zip(names, grads)))


def penultimate(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N, D) features before the classifier, dropout off."""
    model.eval()
    with torch.no_grad():
        features = model.features(torch.from_numpy(images).unsqueeze(1).to(env.device())).cpu().numpy()
    model.train()
    return features


def write_board_end(board: DigitsBoard, model: nn.Module, initial: dict, probe, series, predictions) -> None:
    """After training: histograms at init, the exported forward graph, curves, filters,
    misclassified digits, the Projector."""
    from spotdiff.backends.torch.tensorboard import write_graph

    if not board.enabled:
        return
    start = build_model(board.params, board.data, "native")
    weights.load_neutral(start, initial)
    board.snapshot(0, initial, snapshot(start, board.params.model, probe)[1])
    model.eval()
    write_graph(board.board, model, (probe[0][:1],))
    model.train()
    conv1 = weights.to_neutral({"conv1": model.conv1.weight})["conv1"]
    board.finish(series, conv1, penultimate(model, embedded_test_images(board.data)), predictions)


def run(cell, params, data, cell_dir: Path):
    artifacts = {}
    torch.manual_seed(cell.seed)
    model = build_model(params, data, params.init)
    board = DigitsBoard(cell.tensorboard_dir, params, data)
    x, y = common.probe_batch(data, params.batch_size)
    probe = (torch.from_numpy(x).unsqueeze(1).to(env.device()), torch.from_numpy(y).to(env.device()))
    # A copy only: the gradient at init is taken after training, so that the first epoch stays cold.
    initial = weights.to_neutral(dict(model.named_parameters()))
    optimizer = torch.optim.SGD(
        model.parameters(), **native_kwargs("torch", "sgd", params.optimizer_hparams())
    )
    step = make_step(model, optimizer, cell.mode)
    loader = DataLoader(
        DigitImages(data["x_train"], data["y_train"]),
        batch_size=params.batch_size,
        sampler=EpochOrder(data["epoch_order"]),
    )
    epoch_s, input_s, step_s, train_loss, test_loss, test_accuracy = [], [], [], [], [], []
    for epoch in range(1, params.epochs + 1):
        start = time.perf_counter()
        losses, epoch_input_s, epoch_step_s = train_epoch(model, step, loader)
        env.sync()
        epoch_s.append(time.perf_counter() - start)
        input_s.append(epoch_input_s)
        step_s.append(epoch_step_s)
        train_loss += torch.stack(losses).tolist()  # fetched after the clock stopped
        loss, accuracy, predictions = evaluate(model, data["x_test"], data["y_test"])
        test_loss.append(loss)
        test_accuracy.append(accuracy)
        board.snapshot(epoch, *snapshot(model, params.model, probe))
    param_count = sum(p.numel() for p in model.parameters())
    np.savez(cell_dir / "weights.npz", **weights.to_neutral(dict(model.named_parameters())))
    artifacts["weights"] = "weights.npz"  # neutral layout, for `spotdiff export`
    metrics, series = common.finish(
        params,
        epoch_s,
        len(data["y_train"]),
        train_loss,
        test_loss,
        test_accuracy,
        predictions,
        data["y_test"],
        param_count,
        input_s,
        step_s,
    )
    write_board_end(board, model, initial, probe, series, predictions)
    if params.parity_probe:  # after the timed epochs, so that the first one stays cold
        artifacts["parity_probe"] = parity_probe(params, data, cell_dir, cell.mode)
    return metrics, series, artifacts


def record_steps(
    params, data: dict[str, np.ndarray], steps: int, dtype: str, align: dict, mode: str, variant: str
) -> dict:
    """`spotdiff where`: `steps` SGD steps from the shared weights, dropout off, in `dtype`: every
    layer's output (NCHW, flatten C,H,W), the loss, every gradient and every parameter after the
    update, as numpy. The model's own modules, called one layer at a time, eagerly."""
    from spotdiff.tasks.digits.models import WHERE_LAYERS, where_batches

    real = getattr(torch, dtype)
    model = build_model(params, data, "shared", dropout=False).to(device="cpu", dtype=real)
    sgd = native_kwargs("torch", "sgd", params.optimizer_hparams())
    optimizer = torch.optim.SGD(model.parameters(), **sgd)
    ops = {
        "conv1": model.conv1,
        "conv2": model.conv2,
        "fc1": model.fc1,
        "fc2": model.fc2,
        "flatten": lambda x: torch.flatten(x, 1),
        **{f"relu{i}": F.relu for i in (1, 2, 3)},
        **{f"pool{i}": (lambda x: F.max_pool2d(x, 2)) for i in (1, 2)},
    }
    layers = WHERE_LAYERS[params.model]
    tensors: dict[str, np.ndarray] = {}
    for index, (images, labels) in enumerate(where_batches(data, params.batch_size, steps)):
        x = torch.from_numpy(images).unsqueeze(1).to(real)
        optimizer.zero_grad()
        for name, _ in layers:
            x = ops[name](x)
            tensors[f"{index}/forward/{name}"] = x.detach().numpy().copy()
        loss = F.cross_entropy(x, torch.from_numpy(labels).long())
        loss.backward()
        tensors[f"{index}/loss"] = loss.detach().numpy().copy()
        named = dict(model.named_parameters())
        for key, grad in weights.to_neutral({n: p.grad for n, p in named.items()}).items():
            tensors[f"{index}/grad/{key}"] = grad
        optimizer.step()
        for key, value in weights.to_neutral(named).items():
            tensors[f"{index}/param/{key}"] = value
    return {
        "tensors": tensors,
        "layers": layers,
        "params": list(dict(model.named_parameters())),
        "optimizer": "sgd",
        "aligned": [],
    }
