#!/usr/bin/python3
"""The demo's fine-tuning recipe in PyTorch: the reference side of the accuracy-parity test.

usage: torch_recipe.py MODEL.onnx --train DIR --val DIR [--test DIR] [--seed S]
           [--head-epochs E1] [--ft-epochs E2] [--batch B] [--optimizer adam|sgd]
           [--lr-head LR] [--lr-ft LR] [--momentum M] [--layer-lr-decay F] [--keep-head]
           [--scratch] [--json]

MODEL is testdata/models/fashion_cnn.onnx (or fashion_cnn_init.onnx): its initializers are
loaded by name into make_fashion_cnn.FashionCNN (the network it was exported from). The images
are the PNGs written by tools/fashion_folder (ImageFolder layout, classes = sorted directory
names), preprocessed as the model's metadata says (gray, /255, mean 0.5, std 0.5: read from
"onnx_tl.preprocess", only that 28x28 stretch/no-crop case is supported here).

Transfer recipe (what tools/demo.sh does with onnx-tl):
  1. swap-head: a new Linear(96, classes) with nn.Linear's default initialization (seeded), or
     with --keep-head the model's own head (MODEL was written by `onnx-tl swap-head`: its last
     Gemm is the new head; the parity test starts both sides from that same file);
  2. head only: every other parameter frozen, BatchNormalization on its running statistics
     (onnx-tl --bn frozen), E1 epochs at --lr-head;
  3. everything trainable, BatchNormalization on batch statistics with running-statistics
     updates (onnx-tl --bn train), E2 epochs at --lr-ft; with --layer-lr-decay F each parameter
     block further from the head gets F times the rate (blocks as `onnx-tl freeze --list` numbers
     them: the head 0, then every layer with parameters, from the output back: features.9 1,
     features.8 2, features.5 3, features.4 4, features.1 5, features.0 6).
  In each phase the model kept is the one with the best validation accuracy (first best on
  ties), as `onnx-tl train --val` keeps; phase 3 starts from phase 2's kept model.
--scratch: the model as given (fashion_cnn_init.onnx: random weights) with a new head, every
  parameter trainable from the start, E1 + E2 epochs at --lr-head, BatchNormalization on batch
  statistics: the same budget as the transfer recipe.

Batches: each epoch a seeded permutation of the training set, last partial batch kept;
cross-entropy (mean) on logits; no augmentation, no weight decay, constant learning rate.
Prints the validation accuracy of the kept model (and the test accuracy with --test); --json
prints {"val_acc": .., "test_acc": .., "epochs": [...]} (accuracies as fractions).
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "testdata"))
from make_fashion_cnn import FashionCNN  # noqa: E402


def load_folder(root, pre):
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    xs, ys = [], []
    for k, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(root, c))):
            if not f.lower().endswith((".png", ".jpg", ".jpeg")):
                continue
            im = Image.open(os.path.join(root, c, f)).convert("L")
            if im.size != tuple(pre["size"][::-1]):
                raise SystemExit(f"{root}/{c}/{f}: size {im.size}, this script handles only {pre['size']} images")
            xs.append(np.asarray(im, dtype=np.float32))
            ys.append(k)
    x = np.stack(xs)[:, None, :, :] / float(pre["scale"])
    x = (x - pre["mean"][0]) / pre["std"][0]
    return torch.from_numpy(x.astype(np.float32)), torch.tensor(ys, dtype=torch.int64), classes


def load_model(path):
    m = onnx.load(path)
    meta = {p.key: p.value for p in m.metadata_props}
    pre = json.loads(meta["onnx_tl.preprocess"])
    if pre.get("channels") != "gray" or pre.get("layout", "NCHW") != "NCHW":
        raise SystemExit(f"{path}: this script handles gray NCHW models only")
    net = FashionCNN()
    state = net.state_dict()
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    head = [n for n in m.graph.node if n.op_type == "Gemm"][-1]
    trans_b = any(at.name == "transB" and at.i == 1 for at in head.attribute)
    if "fc.weight" not in inits:  # a head written by onnx-tl swap-head: the last Gemm's B and C
        inits["fc.weight"] = inits[head.input[1]] if trans_b else inits[head.input[1]].T
        inits["fc.bias"] = inits[head.input[2]]
        net.fc = nn.Linear(inits["fc.weight"].shape[1], inits["fc.weight"].shape[0])
        state = net.state_dict()
    for k in state:
        if k.endswith("num_batches_tracked"):
            continue
        if k not in inits:
            raise SystemExit(f"{path}: no initializer '{k}'")
        state[k] = torch.from_numpy(inits[k].copy())
    net.load_state_dict(state)
    return net, pre


def accuracy(net, x, y, batch=500):
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            correct += int((net(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / len(y)


def set_bn_train(net, train_bn):
    net.train()
    if not train_bn:
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.eval()


def param_groups(net, lr, decay):
    """Parameters grouped by block, lr * decay**depth (depth 0 = the head)."""
    if not decay:
        return [{"params": [p for p in net.parameters() if p.requires_grad], "lr": lr}]
    mods = [m for m in net.modules() if any(True for _ in m.parameters(recurse=False))]
    groups = []
    for depth, m in enumerate(reversed(mods)):
        ps = [p for p in m.parameters(recurse=False) if p.requires_grad]
        if ps:
            groups.append({"params": ps, "lr": lr * decay ** depth})
    return groups


def run_phase(net, groups, epochs, a, data, gen, train_bn, log, phase):
    xtr, ytr, xva, yva = data
    if a.optimizer == "adam":
        opt = torch.optim.Adam(groups)
    else:
        opt = torch.optim.SGD(groups, momentum=a.momentum)
    best_acc, best_state = -1.0, None
    for e in range(epochs):
        set_bn_train(net, train_bn)
        perm = torch.randperm(len(ytr), generator=gen)
        tot, n = 0.0, 0
        for i in range(0, len(perm), a.batch):
            idx = perm[i:i + a.batch]
            loss = F.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss) * len(idx)
            n += len(idx)
        acc = accuracy(net, xva, yva)
        log.append({"phase": phase, "epoch": e + 1, "train_loss": tot / n, "val_acc": acc})
        if not a.json:
            print(f"{phase} epoch {e + 1}/{epochs}: train loss {tot / n:.4f}, val accuracy {100 * acc:.2f}%",
                  file=sys.stderr)
        if acc > best_acc:
            best_acc = acc
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    return best_acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head-epochs", type=int, default=10)
    ap.add_argument("--ft-epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    ap.add_argument("--lr-head", type=float, default=1e-2)
    ap.add_argument("--lr-ft", type=float, default=1e-3)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--layer-lr-decay", type=float, default=0.0)
    ap.add_argument("--keep-head", action="store_true")
    ap.add_argument("--scratch", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)

    net, pre = load_model(a.model)
    xtr, ytr, classes = load_folder(a.train, pre)
    xva, yva, vclasses = load_folder(a.val, pre)
    if vclasses != classes:
        raise SystemExit(f"{a.val}: classes {vclasses} differ from {a.train}'s {classes}")
    if a.keep_head:
        if net.fc.out_features != len(classes):
            raise SystemExit(f"{a.model}: {net.fc.out_features} outputs for {len(classes)} classes")
    else:
        net.fc = nn.Linear(net.fc.in_features, len(classes))  # swap-head
    data = (xtr, ytr, xva, yva)
    log = []
    if a.scratch:
        val = run_phase(net, param_groups(net, a.lr_head, 0), a.head_epochs + a.ft_epochs, a, data, gen, True,
                        log, "scratch")
    else:
        for p in net.parameters():
            p.requires_grad_(False)
        for p in net.fc.parameters():
            p.requires_grad_(True)
        run_phase(net, param_groups(net, a.lr_head, 0), a.head_epochs, a, data, gen, False, log, "head")
        for p in net.parameters():
            p.requires_grad_(True)
        val = run_phase(net, param_groups(net, a.lr_ft, a.layer_lr_decay), a.ft_epochs, a, data, gen, True, log,
                        "finetune")
    res = {"val_acc": val, "epochs": log}
    if a.test:
        xte, yte, tclasses = load_folder(a.test, pre)
        if tclasses != classes:
            raise SystemExit(f"{a.test}: classes {tclasses} differ from {a.train}'s {classes}")
        res["test_acc"] = accuracy(net, xte, yte)
    if a.json:
        print(json.dumps(res))
    else:
        print(f"validation accuracy {100 * val:.2f}%" +
              (f", test accuracy {100 * res['test_acc']:.2f}%" if a.test else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
