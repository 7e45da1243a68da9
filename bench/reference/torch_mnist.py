"""A plain PyTorch script in the style of pytorch/examples mnist/main.py (Net, train, test, main)."""

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from common import load, report
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


def train(model, train_loader, optimizer):
    model.train()
    for data, target in train_loader:
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()


def test(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(1)
    data = load()
    train_set = TensorDataset(
        torch.from_numpy(data["x_train"]).unsqueeze(1), torch.from_numpy(data["y_train"])
    )
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    model = Net()
    if args.compile:
        model = torch.compile(model)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    epoch_s = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        train(model, train_loader, optimizer)
        epoch_s.append(time.perf_counter() - start)
    x_test, y_test = torch.from_numpy(data["x_test"]).unsqueeze(1), torch.from_numpy(data["y_test"])
    report(epoch_s, len(train_set), test(model, x_test, y_test))


if __name__ == "__main__":
    main()
