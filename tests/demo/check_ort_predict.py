#!/usr/bin/python3
"""The model written by `onnx-tl train` on the demo task runs in ONNX Runtime with the same
predictions as `onnx-tl predict`.

usage: check_ort_predict.py ONNX_TL FASHION_FOLDER WORKDIR --node NODE --ort-run ort_run.js
           [--model testdata/models/fashion_cnn.onnx] [--data-dir DIR]

Steps: fashion_folder writes 20 training images per class of classes 5-9 and 20 test images per
class; swap-head (5 classes, labels) then `train` 2 epochs with everything trainable and
BatchNormalization in train mode (so the running statistics in the written model differ from the
pretrained ones); the trained model, and its `export`, are then
  - run by ONNX Runtime (tests/ort/ort_run.js) on the test PNGs decoded with PIL and preprocessed
    with numpy as the model's stored preprocessing says (gray, /255, mean/std);
  - asked by `onnx-tl predict --json --top 5` for the same PNGs.
Checks: every image gets the same top-1 class, the same ranking of all 5 classes and the same
confidences (ORT softmax vs predict's confidence) within 1e-4 absolute; predict's labels are the
stored ones. Exit 0 only when everything agrees.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper
from PIL import Image

LABELS = ["5-Sandal", "6-Shirt", "7-Sneaker", "8-Bag", "9-Ankle-boot"]
failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}", file=sys.stderr)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.stderr.write(f"command failed (exit {r.returncode}): {' '.join(cmd)}\n{r.stderr}")
        sys.exit(1)
    return r.stdout


def preprocess(files, model_path):
    meta = {p.key: p.value for p in onnx.load(model_path).metadata_props}
    pre = json.loads(meta["onnx_tl.preprocess"])
    assert pre["channels"] == "gray" and pre["layout"] == "NCHW", pre
    xs = []
    for f in files:
        im = Image.open(f).convert("L")
        assert im.size == (pre["size"][1], pre["size"][0]), (f, im.size)
        xs.append(np.asarray(im, dtype=np.float32))
    x = np.stack(xs)[:, None] / np.float32(pre["scale"])
    return ((x - np.float32(pre["mean"][0])) / np.float32(pre["std"][0])).astype(np.float32)


def compare(tag, model, files, a, work):
    x = preprocess(files, model)
    xp = os.path.join(work, f"{tag}_x.npy")
    np.save(xp, x)
    od = os.path.join(work, f"{tag}_ort")
    run([a.node, a.ort_run, model, od, "--input", f"input={xp}"])
    logits = np.load(os.path.join(od, "logits.npy")).astype(np.float64)
    e = np.exp(logits - logits.max(1, keepdims=True))
    prob = e / e.sum(1, keepdims=True)
    preds = []
    for k in range(0, len(files), 50):  # the CLI takes at most 64 positional arguments
        out = json.loads(run([a.onnx_tl, "predict", model, *files[k:k + 50], "--json", "--top", "5"]))
        preds += out.get("predictions", [])
    if len(preds) != len(files):
        fail(f"{tag}: predict returned {len(preds)} predictions for {len(files)} files")
        return
    agree = 0
    for i, (f, p) in enumerate(zip(files, preds)):
        if p.get("file") != f:
            fail(f"{tag}: prediction {i} is for {p.get('file')!r}, expected {f!r}")
            continue
        top = p["top"]
        order = [t["index"] for t in top]
        conf = np.array([t["confidence"] for t in top])
        want_order = list(np.argsort(-prob[i], kind="stable"))
        if order[0] != want_order[0]:
            fail(f"{tag}: {f}: predict top-1 {order[0]}, ONNX Runtime {want_order[0]} (p {prob[i].round(5)})")
            continue
        agree += 1
        if sorted(order) != list(range(5)):
            fail(f"{tag}: {f}: top-5 indices {order}")
            continue
        if np.max(np.abs(conf - prob[i][order])) > 1e-4:
            fail(f"{tag}: {f}: confidences {conf} vs ONNX Runtime {prob[i][order]}")
        # ties aside, the same ranking
        for k in range(4):
            if prob[i][order[k]] + 1e-6 < prob[i][order[k + 1]]:
                fail(f"{tag}: {f}: ranking {order} disagrees with ONNX Runtime's probabilities {prob[i]}")
                break
        if [t["label"] for t in top] != [LABELS[j] for j in order]:
            fail(f"{tag}: {f}: labels {[t['label'] for t in top]}, expected the stored ones")
    acc = float(np.mean([np.argmax(prob[i]) == LABELS.index(os.path.basename(os.path.dirname(f)))
                         for i, f in enumerate(files)]))
    print(f"{tag}: {agree}/{len(files)} top-1 agree with ONNX Runtime; ONNX Runtime accuracy {100 * acc:.1f}%")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx_tl")
    ap.add_argument("fashion_folder")
    ap.add_argument("workdir")
    ap.add_argument("--node", required=True)
    ap.add_argument("--ort-run", required=True)
    ap.add_argument("--model", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                    "testdata", "models", "fashion_cnn.onnx"))
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    w = a.workdir
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)
    run([a.fashion_folder, "-o", f"{w}/train", "--per-class", "20", "--seed", "7", "--data-dir", a.data_dir])
    run([a.fashion_folder, "-o", f"{w}/test", "--split", "test", "--per-class", "20", "--seed", "7",
         "--data-dir", a.data_dir])
    with open(f"{w}/labels.txt", "w") as f:
        f.write("\n".join(LABELS) + "\n")
    run([a.onnx_tl, "swap-head", a.model, "-o", f"{w}/swapped.onnx", "--classes", "5", "--labels",
         f"{w}/labels.txt", "--seed", "3"])
    run([a.onnx_tl, "train", f"{w}/swapped.onnx", "--data", f"{w}/train", "--val-split", "0", "-o",
         f"{w}/trained.onnx", "--epochs", "2", "--batch", "20", "--lr", "0.003", "--optimizer", "adam", "--seed", "3",
         "--quiet"])
    run([a.onnx_tl, "export", f"{w}/trained.onnx", "-o", f"{w}/exported.onnx"])
    # the trained model's BatchNormalization statistics moved: the check covers them
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(f"{w}/trained.onnx").graph.initializer}
    base = {t.name: numpy_helper.to_array(t) for t in onnx.load(a.model).graph.initializer}
    rm = [k for k in base if k.endswith("running_mean")]
    if not rm or all(np.array_equal(inits.get(k), base[k]) for k in rm):
        fail("train left every BatchNormalization running mean unchanged (or renamed them)")
    files = []
    for d in sorted(os.listdir(f"{w}/test")):
        files += [os.path.join(w, "test", d, f) for f in sorted(os.listdir(f"{w}/test/{d}"))]
    compare("trained", f"{w}/trained.onnx", files, a, w)
    compare("exported", f"{w}/exported.onnx", files, a, w)
    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        return 1
    print("ONNX Runtime and onnx-tl predict agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
