#!/usr/bin/python3
"""Make the demo's pretrained model: a small CNN trained on Fashion-MNIST classes 0-4.

Run with Debian's python3 (torch 1.13, onnx 1.12) and dataset-fashion-mnist installed:

    /usr/bin/python3 testdata/make_fashion_cnn.py [OUTDIR]     (default testdata/models)

Writes
    OUTDIR/fashion_cnn.onnx       trained on the 30000 training images of classes 0-4
                                  (T-shirt/top, Trouser, Pullover, Dress, Coat); its accuracy
                                  on the 5000 test images of those classes is printed (and
                                  recorded in README.md, "The demo")
    OUTDIR/fashion_cnn_init.onnx  the same network (same names, same metadata) with PyTorch's
                                  default random initialization: the "from scratch" side of
                                  `make demo`

Network (FashionCNN below, ~75k parameters): three blocks Conv3x3 (pad 1) -> BatchNorm ->
ReLU -> MaxPool 2x2 at widths 32/64/96 (28 -> 14 -> 7 -> 3), global average pool, flatten,
Linear(96, 5). Input `input` float32 [batch, 1, 28, 28] (NCHW, dynamic batch), output
`logits` [batch, 5]. Exported at opset 13 with do_constant_folding=False so that the
initializers keep PyTorch's parameter names (features.0.weight, ..., fc.weight), and with
TrainingMode.PRESERVE so that the BatchNormalization nodes stay in the graph (not folded).

Preprocessing: pixel / 255, then (x - 0.5) / 0.5, stored as metadata "onnx_tl.preprocess";
class names as metadata "onnx_tl.labels" (one per line).

Training: seeded (SEED), single-threaded deterministic CPU kernels, SGD momentum 0.9,
Nesterov, weight decay 5e-4, batch 128, one-cycle-like cosine schedule, random horizontal
flips; EPOCHS epochs (about 2-4 minutes on one core). Running the script again gives the
same weights.
"""
import gzip
import json
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = "/usr/share/datasets/fashion-mnist"
SEED = 20241126
EPOCHS = 4
BATCH = 128
LR = 0.05
CLASSES = [0, 1, 2, 3, 4]
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
PREPROCESS = {"size": [28, 28], "resize": "stretch", "crop": "none", "channels": "gray", "scale": 255,
              "mean": [0.5], "std": [0.5], "layout": "NCHW"}


def read_idx(path):
    """An idx file (gzip'd) as a numpy array: images (N, 28, 28) uint8 or labels (N,) uint8."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    if (magic >> 8) != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file (magic {magic:#x})")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


def load_split(split, classes):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(DATA_DIR, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(DATA_DIR, f"{prefix}-labels-idx1-ubyte.gz"))
    keep = np.isin(y, classes)
    x, y = x[keep], y[keep]
    remap = {c: i for i, c in enumerate(classes)}
    y = np.array([remap[int(v)] for v in y], dtype=np.int64)
    return x, y


def normalize(x_uint8):
    x = x_uint8.astype(np.float32) / 255.0
    x = (x - PREPROCESS["mean"][0]) / PREPROCESS["std"][0]
    return torch.from_numpy(x[:, None, :, :].copy())


class FashionCNN(nn.Module):
    def __init__(self, widths=(32, 64, 96), classes=5):
        super().__init__()
        layers = []
        cin = 1
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.features(x)
        x = self.pool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def accuracy(net, x, y, batch=500):
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            correct += int((net(x[i:i + batch]).argmax(1) == torch.from_numpy(y[i:i + batch])).sum())
    return correct / len(y)


def export(net, path):
    net.eval()
    torch.onnx.export(net, torch.zeros(1, 1, 28, 28), path, opset_version=13, do_constant_folding=False,
                      training=torch.onnx.TrainingMode.PRESERVE, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    m = onnx.load(path)
    # the exporter de-duplicates initializers of equal value (a fresh BatchNorm's weight = running_var,
    # bias = running_mean) into Identity nodes: give every parameter its own initializer again
    inits = {t.name: t for t in m.graph.initializer}
    for n in list(m.graph.node):
        if n.op_type == "Identity" and n.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[n.input[0]])
            t.name = n.output[0]
            m.graph.initializer.append(t)
            m.graph.node.remove(n)
    names = {t.name for t in m.graph.initializer}
    missing = [k for k in net.state_dict() if not k.endswith("num_batches_tracked") and k not in names]
    assert not missing, f"initializers not named after the PyTorch parameters: {missing}"
    assert sum(n.op_type == "BatchNormalization" for n in m.graph.node) == 3
    for k, v in (("onnx_tl.preprocess", json.dumps(PREPROCESS, separators=(",", ":"))),
                 ("onnx_tl.labels", "\n".join(LABELS))):
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)
    return os.path.getsize(path)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "models")
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    rng = np.random.RandomState(SEED)

    xtr_u8, ytr = load_split("train", CLASSES)
    xte_u8, yte = load_split("test", CLASSES)
    xtr, xte = normalize(xtr_u8), normalize(xte_u8)
    print(f"Fashion-MNIST classes {CLASSES}: {len(ytr)} training, {len(yte)} test images")

    net = FashionCNN()
    # the from-scratch starting point: PyTorch's default initialization, seeded
    init_state = {k: v.clone() for k, v in net.state_dict().items()}
    nparams = sum(p.numel() for p in net.parameters())
    print(f"FashionCNN: {nparams} parameters")

    steps_per_epoch = (len(ytr) + BATCH - 1) // BATCH
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=EPOCHS * steps_per_epoch,
                                                pct_start=0.15)
    t0 = time.time()
    for epoch in range(EPOCHS):
        net.train()
        perm = rng.permutation(len(ytr))
        total, nb = 0.0, 0
        for i in range(0, len(perm), BATCH):
            idx = perm[i:i + BATCH]
            xb = xtr[idx]
            flip = torch.from_numpy(rng.rand(len(idx)) < 0.5)
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            yb = torch.from_numpy(ytr[idx])
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss)
            nb += 1
        print(f"epoch {epoch + 1}/{EPOCHS}: train loss {total / nb:.4f}, test accuracy (classes 0-4) "
              f"{100 * accuracy(net, xte, yte):.2f}%, {time.time() - t0:.0f} s", flush=True)

    acc = accuracy(net, xte, yte)
    path = os.path.join(outdir, "fashion_cnn.onnx")
    size = export(net, path)
    print(f"{path}: {size} bytes; test accuracy on classes 0-4: {100 * acc:.2f}% ({len(yte)} images)")

    scratch = FashionCNN()
    scratch.load_state_dict(init_state)
    path = os.path.join(outdir, "fashion_cnn_init.onnx")
    size = export(scratch, path)
    print(f"{path}: {size} bytes; random initialization (test accuracy {100 * accuracy(scratch, xte, yte):.2f}%)")


if __name__ == "__main__":
    main()
