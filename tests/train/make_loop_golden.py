#!/usr/bin/python3
"""make_loop_golden.py [OUTDIR] - PyTorch reference of a whole `onnx-tl train` run for
tests/train/check_train.py (case torch_loop).

The BN CNN of make_bn_golden.py (tests/train/bn/model.onnx, weights loaded from the ONNX file) is
trained in model.train() for 2 epochs over data.npz (40 samples, batch 12 in file order: the last
batch of each epoch has 4 samples) with SGD(lr 0.05, momentum 0.9, weight_decay 1e-4) and, per
step, LinearLR(1/5, total_iters=4) chained with CosineAnnealingLR(T_max=8): the recipe of
  onnx-tl train model.onnx --data data.npz --epochs 2 --batch 12 --no-shuffle --val-split 0
      --optimizer sgd --momentum 0.9 --weight-decay 1e-4 --lr 0.05 --schedule cosine --warmup 5
Saves data.npz and expected.npz (every parameter and running statistic after training, by
initializer name)."""
import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch.optim import lr_scheduler as S

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_bn_golden import Net  # noqa: E402


def main(out):
    here = os.path.dirname(os.path.abspath(__file__))
    os.makedirs(out, exist_ok=True)
    rng = np.random.RandomState(7)
    y = rng.randint(0, 4, 40).astype(np.int64)
    x = (rng.randn(40, 3, 10, 10) + y[:, None, None, None] * 0.5).astype(np.float32)
    np.savez(os.path.join(out, "data.npz"), x=x, y=y)
    net = Net()
    model = onnx.load(os.path.join(here, "bn", "model.onnx"))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    sd = net.state_dict()
    for k in sd:
        if k in init:
            sd[k] = torch.tensor(init[k].copy())
    net.load_state_dict(sd)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    steps_per_epoch = 4
    sched = S.ChainedScheduler([S.LinearLR(opt, 1 / 5, total_iters=4),
                                S.CosineAnnealingLR(opt, T_max=2 * steps_per_epoch)])
    for _ in range(2):
        for b in range(0, 40, 12):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(torch.tensor(x[b:b + 12])), torch.tensor(y[b:b + 12]))
            loss.backward()
            opt.step()
            sched.step()
    res = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items() if k in init}
    np.savez(os.path.join(out, "expected.npz"), **res)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "loop"))
