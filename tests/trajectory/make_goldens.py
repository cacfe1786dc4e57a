#!/usr/bin/python3
"""make_goldens.py [OUTDIR] - PyTorch loss trajectories for tests/trajectory/test_trajectory.c.

A small CNN (Conv-BN-ReLU-MaxPool-Conv-ReLU-GlobalAvgPool-Linear), seeded, exported with
do_constant_folding=False and BatchNormalization kept (initializer names = PyTorch parameter
names), then trained in PyTorch for 30 full-batch steps on one fixed batch with
  sgd:   SGD(lr 0.05, momentum 0.9, weight_decay 1e-4)
  adamw: AdamW(lr 3e-3, weight_decay 0.01)
and CrossEntropyLoss. Saves model.onnx, x.npy, y.npy, loss_sgd.npy, loss_adamw.npy."""
import os
import sys

import numpy as np
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = torch.relu(self.conv2(x))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def trajectory(make_opt, x, y):
    torch.manual_seed(0)
    net = Net()
    net.train()
    opt = make_opt(net.parameters())
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses, np.float32)


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.RandomState(0)
    x = rng.randn(16, 3, 12, 12).astype(np.float32)
    y = rng.randint(0, 5, size=16).astype(np.int64)
    torch.manual_seed(0)
    net = Net()
    net.train()
    torch.onnx.export(net, torch.tensor(x), os.path.join(out, "model.onnx"), input_names=["input"],
                      output_names=["logits"], opset_version=13, do_constant_folding=False,
                      training=torch.onnx.TrainingMode.PRESERVE, dynamic_axes={"input": {0: "N"}})
    np.save(os.path.join(out, "x.npy"), x)
    np.save(os.path.join(out, "y.npy"), y)
    xt, yt = torch.tensor(x), torch.tensor(y)
    np.save(os.path.join(out, "loss_sgd.npy"),
            trajectory(lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-4), xt, yt))
    np.save(os.path.join(out, "loss_adamw.npy"),
            trajectory(lambda p: torch.optim.AdamW(p, lr=3e-3, weight_decay=0.01), xt, yt))
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
