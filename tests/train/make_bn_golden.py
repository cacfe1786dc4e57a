#!/usr/bin/python3
"""make_bn_golden.py [OUTDIR] - PyTorch goldens for tests/train/test_bn_stats.c.

A small CNN with two BatchNormalization layers (momentum 0.1 and 0.3), exported with
training=PRESERVE (initializer names = PyTorch names), trained in model.train() for 6 SGD steps
(lr 0.1, momentum 0.9) on 6 fixed batches of 8 with CrossEntropyLoss. Saves model.onnx,
x.npy (6, 8, 3, 10, 10), y.npy (6, 8) and the running statistics after the last step as
<bn>.running_mean.npy / <bn>.running_var.npy."""
import os
import sys

import numpy as np
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8, momentum=0.3)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = nn.functional.max_pool2d(x, 2)
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.RandomState(1)
    x = (rng.randn(6, 8, 3, 10, 10) * 2 + 0.5).astype(np.float32)
    y = rng.randint(0, 4, size=(6, 8)).astype(np.int64)
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # non-trivial starting statistics
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 2.0)
    net.train()
    torch.onnx.export(net, torch.tensor(x[0]), os.path.join(out, "model.onnx"), input_names=["input"],
                      output_names=["logits"], opset_version=13, do_constant_folding=False,
                      training=torch.onnx.TrainingMode.PRESERVE, dynamic_axes={"input": {0: "N"}})
    net.train()
    np.save(os.path.join(out, "x.npy"), x)
    np.save(os.path.join(out, "y.npy"), y)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for s in range(x.shape[0]):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(torch.tensor(x[s])), torch.tensor(y[s]))
        loss.backward()
        opt.step()
    for name in ("bn1", "bn2"):
        bn = getattr(net, name)
        np.save(os.path.join(out, name + ".running_mean.npy"), bn.running_mean.numpy().astype(np.float32))
        np.save(os.path.join(out, name + ".running_var.npy"), bn.running_var.numpy().astype(np.float32))
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "bn"))
