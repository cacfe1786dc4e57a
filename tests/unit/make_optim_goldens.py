#!/usr/bin/python3
"""make_optim_goldens.py OUTDIR - torch.optim reference trajectories for tests/unit/test_optim.c.

For each configuration: two parameters, 6 steps of seeded random gradients, optional global
gradient-norm clipping and a learning-rate multiplier of 0.1 on the second parameter (a second
param group). Saves CONFIG.npz with p0, p1 (initial), g{s}_{i} (gradient of step s), and
w{s}_{i} (parameters after step s), plus the configuration in `cfg` (float64 vector):
[kind(0 sgd,1 adam,2 adamw), lr, momentum, dampening, nesterov, weight_decay, clip, lr_mult1].
"""
import os
import sys
import zlib

import numpy as np
import torch

CONFIGS = {
    "sgd": (0, 0.1, 0.0, 0.0, 0, 0.0, 0.0, 1.0),
    "sgd_momentum_wd": (0, 0.05, 0.9, 0.0, 0, 0.01, 0.0, 1.0),
    "sgd_nesterov": (0, 0.05, 0.9, 0.0, 1, 0.0, 0.0, 0.1),
    "sgd_dampening_clip": (0, 0.1, 0.8, 0.3, 0, 0.0, 0.5, 1.0),
    "adam_wd": (1, 0.01, 0.0, 0.0, 0, 0.01, 0.0, 1.0),
    "adamw": (2, 0.01, 0.0, 0.0, 0, 0.05, 0.0, 0.1),
    "adamw_clip": (2, 0.003, 0.0, 0.0, 0, 0.01, 1.0, 1.0),
}


def main(out):
    os.makedirs(out, exist_ok=True)
    for name, cfg in CONFIGS.items():
        kind, lr, mom, damp, nest, wd, clip, mult = cfg
        rng = np.random.RandomState(zlib.crc32(name.encode()))
        p0 = rng.randn(5, 3).astype(np.float32)
        p1 = rng.randn(7).astype(np.float32)
        t0 = torch.tensor(p0, requires_grad=True)
        t1 = torch.tensor(p1, requires_grad=True)
        groups = [{"params": [t0], "lr": lr}, {"params": [t1], "lr": lr * mult}]
        if kind == 0:
            opt = torch.optim.SGD(groups, lr=lr, momentum=mom, dampening=damp, nesterov=bool(nest), weight_decay=wd)
        elif kind == 1:
            opt = torch.optim.Adam(groups, lr=lr, weight_decay=wd)
        else:
            opt = torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
        arrays = {"p0": p0, "p1": p1, "cfg": np.array(cfg, np.float64)}
        for s in range(6):
            g0 = rng.randn(5, 3).astype(np.float32)
            g1 = rng.randn(7).astype(np.float32) * 3
            arrays[f"g{s}_0"], arrays[f"g{s}_1"] = g0, g1
            t0.grad = torch.tensor(g0)
            t1.grad = torch.tensor(g1)
            if clip > 0:
                torch.nn.utils.clip_grad_norm_([t0, t1], clip)
            opt.step()
            arrays[f"w{s}_0"] = t0.detach().numpy().copy()
            arrays[f"w{s}_1"] = t1.detach().numpy().copy()
        np.savez(os.path.join(out, name + ".npz"), **arrays)
    print(f"wrote {len(CONFIGS)} configurations to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "data", "optim"))
