#!/usr/bin/python3
"""make_sched_golden.py [OUTDIR] - learning-rate sequences from torch.optim.lr_scheduler for
tests/train/test_schedule.c: 12 epochs of 5 steps (60 steps), one lr per step (the value used by
that step), written as sched_<case>.npy (float64). Cases:
  step:          StepLR(step_size=3, gamma=0.5) stepped per epoch, lr 0.1
  cosine:        CosineAnnealingLR(T_max=60, eta_min=1e-3) per step, lr 0.1
  cosine_warm:   LinearLR(1/10, total_iters=9) chained with CosineAnnealingLR(T_max=60) (eta_min 0:
                 with eta_min > 0 the chained recursive forms are not a product)
  constant_warm: LinearLR(1/7, total_iters=6), lr 0.05
  onecycle:      OneCycleLR(max_lr=0.1, total_steps=60) per step; also onecycle_mom.npy (SGD momentum)
  plateau:       ReduceLROnPlateau(patience=2, factor=0.5) per epoch on plateau_metric.npy, lr 0.1"""
import os
import sys

import numpy as np
import torch
from torch.optim import lr_scheduler as S

EPOCHS, SPE = 12, 5


def opt(lr, momentum=0.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=momentum)


def per_step(o, scheds, per_epoch=()):
    lrs = []
    for e in range(EPOCHS):
        for s in range(SPE):
            lrs.append(o.param_groups[0]["lr"])
            o.step()
            for sc in scheds:
                sc.step()
        for sc in per_epoch:
            sc.step()
    return np.array(lrs, np.float64)


def main(out):
    os.makedirs(out, exist_ok=True)
    total = EPOCHS * SPE
    res = {}
    o = opt(0.1)
    res["step"] = per_step(o, [], [S.StepLR(o, step_size=3, gamma=0.5)])
    o = opt(0.1)
    res["cosine"] = per_step(o, [S.CosineAnnealingLR(o, T_max=total, eta_min=1e-3)])
    o = opt(0.1)
    res["cosine_warm"] = per_step(o, [S.ChainedScheduler([S.LinearLR(o, 1 / 10, total_iters=9),
                                                          S.CosineAnnealingLR(o, T_max=total)])])
    o = opt(0.05)
    res["constant_warm"] = per_step(o, [S.LinearLR(o, 1 / 7, total_iters=6)])
    o = opt(0.1, momentum=0.9)
    sc = S.OneCycleLR(o, max_lr=0.1, total_steps=total)
    lrs, moms = [], []
    for _ in range(total):
        lrs.append(o.param_groups[0]["lr"])
        moms.append(o.param_groups[0]["momentum"])
        o.step()
        if len(lrs) < total:
            sc.step()
    res["onecycle"] = np.array(lrs)
    res["onecycle_mom"] = np.array(moms)
    metric = np.array([1.0, 0.9, 0.95, 0.91, 0.92, 0.85, 0.86, 0.86, 0.87, 0.84, 0.9, 0.9])
    o = opt(0.1)
    sc = S.ReduceLROnPlateau(o, patience=2, factor=0.5)
    lrs = []
    for e in range(EPOCHS):
        lrs += [o.param_groups[0]["lr"]] * SPE
        sc.step(metric[e])
    res["plateau"] = np.array(lrs)
    np.save(os.path.join(out, "plateau_metric.npy"), metric)
    for k, v in res.items():
        np.save(os.path.join(out, "sched_%s.npy" % k), v.astype(np.float64))
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "sched"))
