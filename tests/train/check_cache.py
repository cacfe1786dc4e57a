#!/usr/bin/python3
"""check_cache.py ONNX_TL SRC_DIR CASE - the frozen-prefix feature cache of `onnx-tl train`
(src/feature_cache.c) on small synthetic data made here. One CASE per CTest entry:

  same     a frozen backbone (conv/BN, --bn frozen) under a swap-head head with a hidden layer and
           Dropout (--all-but-head frozen): the stderr note says the cache is used; OUT weights and
           every logged metric equal those of --no-cache within 1e-6 (absolute, weights also 1e-5
           relative; observed: bit-identical bytes, printed); --no-cache prints no cache note; the same
           with tiny_resnet (residual backbone, --threads 2)
  resume   a cached run of 1 epoch with a checkpoint, resumed with --epochs 3 (constant schedule; the
           cache is rebuilt): OUT and log bit-identical to an uninterrupted 3-epoch run; a --no-cache
           checkpoint resumed with the cache: weights within 1e-6
  refused  no cache, with a note naming the reason, for --augment, --bn train (BatchNormalization
           in the frozen part), --cache-mem smaller than the features, --unfreeze-every, a model
           with every parameter trainable; --cache-mem garbage: exit 2"""
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import otl_test  # noqa: E402
from otl_test import bn_data, check, inits, log_lines, read, tl  # noqa: E402

ONNX_TL, SRC, CASE = sys.argv[1:4]
otl_test.ONNX_TL = ONNX_TL
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(SRC)))
BN = os.path.join(SRC, "bn", "model.onnx")  # conv1 bn1 conv2 bn2 fc, input (N, 3, 10, 10), 4 classes
NOTE = "note: feature cache: '"


def img_data(path, n=160, seed=0):
    bn_data(path, n, seed)


def frozen_model(d, dropout=True):
    """BN backbone + a new head (hidden layer, optionally Dropout), all but the head frozen."""
    extra = ["--dropout", 0.5] if dropout else []
    tl("swap-head", BN, "-o", d + "/sh.onnx", "--classes", 4, "--hidden", 16, "--seed", 1, *extra)
    tl("freeze", d + "/sh.onnx", "-o", d + "/fz.onnx", "--all-but-head")
    return d + "/fz.onnx"


COMMON = ["--epochs", 3, "--batch", 16, "--lr", 3e-3, "--threads", 1, "--seed", 5, "--bn", "frozen",
          "--schedule", "cosine", "--warmup", 4]


def case_same(d):
    img_data(d + "/i.npz")
    m = frozen_model(d)
    a = tl("train", m, "--data", d + "/i.npz", "-o", d + "/c.onnx", "--log", d + "/c.jsonl", *COMMON)
    b = tl("train", m, "--data", d + "/i.npz", "-o", d + "/n.onnx", "--log", d + "/n.jsonl", "--no-cache", *COMMON)
    check(NOTE in a.stderr and "'/Flatten_output_0'" in a.stderr, "the cache is used at the head's input: " +
          next((l for l in a.stderr.splitlines() if "feature cache" in l), "(no note)"))
    check("feature cache" not in b.stderr, "--no-cache: no cache note")
    wc, wn = inits(d + "/c.onnx"), inits(d + "/n.onnx")
    check(wc.keys() == wn.keys(), "same initializers")
    worst = max(float(np.max(np.abs(wc[k].astype(np.float64) - wn[k]))) if wc[k].size else 0.0 for k in wc)
    check(all(np.allclose(wc[k], wn[k], rtol=1e-5, atol=1e-6) for k in wc),
          "OUT weights equal --no-cache's within 1e-6 (max abs difference %g)" % worst)
    base = inits(m)
    check(any(not np.array_equal(base[k], wc[k]) for k in wc), "training changed the head")
    check(all(np.array_equal(base[k], wc[k]) for k in wc if k.startswith(("conv", "bn"))), "the backbone is unchanged")
    lc, ln = log_lines(d + "/c.jsonl"), log_lines(d + "/n.jsonl")
    keys = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")
    check(len(lc) == len(ln) == 3 and all(abs(x[k] - y[k]) <= 1e-6 for x, y in zip(lc, ln) for k in keys),
          "every logged metric equals --no-cache's within 1e-6")
    print("OUT bytes identical to --no-cache: %s" % (read(d + "/c.onnx") == read(d + "/n.onnx")))
    # a residual network (tiny_resnet, 32x32): the cache at the head's input after pooling
    r = np.random.RandomState(1)
    y = r.randint(0, 10, 96).astype(np.int64)
    np.savez(d + "/r.npz", x=(r.randn(96, 3, 32, 32) * 0.5 + y[:, None, None, None] * 0.1).astype(np.float32), y=y)
    tl("freeze", os.path.join(ROOT, "testdata", "models", "tiny_resnet.onnx"), "-o", d + "/rz.onnx", "--all-but-head")
    rargs = ["train", d + "/rz.onnx", "--data", d + "/r.npz", "--epochs", 2, "--batch", 16, "--threads", 2, "--bn",
             "frozen", "--lr", 0.01]
    a = tl(*rargs, "-o", d + "/rc.onnx", "--log", d + "/rc.jsonl")
    tl(*rargs, "-o", d + "/rn.onnx", "--log", d + "/rn.jsonl", "--no-cache")
    check(NOTE in a.stderr, "tiny_resnet: the cache is used")
    wc, wn = inits(d + "/rc.onnx"), inits(d + "/rn.onnx")
    check(all(np.allclose(wc[k], wn[k], rtol=1e-5, atol=1e-6) for k in wc), "tiny_resnet: OUT weights within 1e-6")
    lc, ln = log_lines(d + "/rc.jsonl"), log_lines(d + "/rn.jsonl")
    check(all(abs(x[k] - y[k]) <= 1e-6 for x, y in zip(lc, ln) for k in keys), "tiny_resnet: metrics within 1e-6")
    print("tiny_resnet OUT bytes identical to --no-cache: %s" % (read(d + "/rc.onnx") == read(d + "/rn.onnx")))


def case_resume(d):
    img_data(d + "/i.npz")
    m = frozen_model(d)
    common = [a for a in COMMON if a not in ("--schedule", "cosine", "--warmup", 4)]  # constant: lr independent
    ref = list(common)
    common[common.index("--epochs") + 1] = 1                                             # of the total
    tl("train", m, *ref, "--data", d + "/i.npz", "-o", d + "/ref.onnx", "--log", d + "/ref.jsonl")
    tl("train", m, *common, "--data", d + "/i.npz", "-o", d + "/out.onnx", "--checkpoint", d + "/ck", "--log",
        d + "/log.jsonl")
    st = open(d + "/ck/state.txt").read()
    check("epoch 1\n" in st, "checkpoint after epoch 1")
    r = tl("train", m, "--data", d + "/i.npz", "-o", d + "/out.onnx", "--resume", d + "/ck", "--epochs", 3, "--log",
            d + "/log.jsonl", "--threads", 1)
    check(NOTE in r.stderr, "the resumed run rebuilds the cache")
    check(read(d + "/out.onnx") == read(d + "/ref.onnx"), "resumed OUT bit-identical to the uninterrupted run")
    strip = lambda ls: [{k: v for k, v in l.items() if k not in ("seconds", "images_per_s")} for l in ls]
    check(strip(log_lines(d + "/ref.jsonl")) == strip(log_lines(d + "/log.jsonl")), "resumed log equals the "
          "uninterrupted one")
    # a checkpoint of a run without the cache continues with it (and the other way round)
    shutil.rmtree(d + "/ck")
    tl("train", m, *common, "--data", d + "/i.npz", "-o", d + "/out.onnx", "--checkpoint", d + "/ck", "--no-cache")
    tl("train", m, "--data", d + "/i.npz", "-o", d + "/out.onnx", "--resume", d + "/ck", "--epochs", 3, "--threads", 1)
    wr, wo = inits(d + "/ref.onnx"), inits(d + "/out.onnx")
    check(all(np.allclose(wr[k], wo[k], rtol=1e-5, atol=1e-6) for k in wr),
          "--no-cache checkpoint resumed with the cache: weights within 1e-6")


def case_refused(d):
    img_data(d + "/i.npz")
    m = frozen_model(d, dropout=False)
    base = ["--data", d + "/i.npz", "-o", d + "/o.onnx", "--epochs", 1, "--threads", 1]
    cases = [
        ([m, "--bn", "frozen", "--augment", "hflip"], "--augment"),
        ([m, "--bn", "train"], "BatchNormalization '/bn1/BatchNormalization'"),
        ([m, "--bn", "frozen", "--cache-mem", "1K"], "more than --cache-mem"),
        ([m, "--bn", "frozen", "--unfreeze-every", 1], "--unfreeze-every"),
    ]
    for args, why in cases:
        p = tl("train", *args, *base)
        note = next((l for l in p.stderr.splitlines() if "feature cache" in l), "(no note)")
        check(NOTE not in p.stderr and "note: no feature cache:" in note and why in note,
              "%s: no cache, the note says why: %s" % (" ".join(map(str, args[1:])), note))
    # nothing frozen (full fine-tune): no cache, and no note about it either
    p = tl("train", BN, "--bn", "frozen", *base)
    check("feature cache" not in p.stderr, "nothing frozen: no feature-cache note (stderr: %r)" % p.stderr[-300:])
    p = tl("train", m, "--bn", "frozen", "--cache-mem", "8M", *base)
    check(NOTE in p.stderr, "--cache-mem 8M is enough")
    p = tl("train", m, "--cache-mem", "lots", *base, expect=2)
    check("--cache-mem" in p.stderr, "--cache-mem garbage: usage error naming it")


if __name__ == "__main__":
    sys.exit(otl_test.main(CASE, globals(), prefix="otl-cache-"))
