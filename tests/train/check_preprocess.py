#!/usr/bin/python3
"""check_preprocess.py - `train --preprocess FILE.json` (../shared/CLI.md: preprocessing settable by train).

    check_preprocess.py ONNX_TL FASHION_FOLDER MODEL WORKDIR [--data-dir DIR]

On 20 Fashion-MNIST PNGs (fashion_folder, classes 5-9) and MODEL with a fresh 5-class head:
  - `train --preprocess` with mean 0.3 / std 0.4 stores exactly that preprocessing in OUT (the other
    keys from the model's) and trains on it: OUT's weights differ from a run without it, while a
    --preprocess equal to the model's own gives OUT weights bit-identical to that run;
  - bad JSON, --preprocess with --resume, and -o on the JSON file are refused (exit 1, 2, 2).
Exit status 0 when all hold, 1 otherwise.
"""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper

FAILS = []


def check(cond, msg):
    if not cond:
        FAILS.append(msg)
        print("FAIL:", msg)


def run(cmd, expect=0):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    check(p.returncode == expect, f"{' '.join(map(str, cmd))}: exit {p.returncode}, want {expect}: {p.stderr.strip()}")
    return p


def weights(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def main():
    args = sys.argv[1:]
    data_dir = "/usr/share/datasets/fashion-mnist"
    if "--data-dir" in args:
        i = args.index("--data-dir")
        data_dir = args[i + 1]
        del args[i:i + 2]
    if len(args) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    tl, ff, model, work = args
    os.makedirs(work, exist_ok=True)
    img = os.path.join(work, "img")
    if not os.path.isdir(img):
        run([ff, "-o", img, "--split", "train", "--per-class", 4, "--data-dir", data_dir])
    labels = os.path.join(work, "labels.txt")
    open(labels, "w").write("\n".join(sorted(os.listdir(img))) + "\n")
    sw = os.path.join(work, "sw.onnx")
    run([tl, "swap-head", model, "-o", sw, "--classes", 5, "--labels", labels, "--seed", 1])
    own = json.loads([p.value for p in onnx.load(sw).metadata_props if p.key == "onnx_tl.preprocess"][0])
    common = ["--data", img, "--epochs", 1, "--batch", 8, "--seed", 1, "--threads", 1, "--quiet"]
    pj, same = os.path.join(work, "pp.json"), os.path.join(work, "same.json")
    json.dump({"mean": [0.3], "std": [0.4]}, open(pj, "w"))
    json.dump(own, open(same, "w"))
    outs = {k: os.path.join(work, k + ".onnx") for k in ("plain", "pp", "same")}
    run([tl, "train", sw, "-o", outs["plain"]] + common)
    run([tl, "train", sw, "-o", outs["pp"], "--preprocess", pj] + common)
    run([tl, "train", sw, "-o", outs["same"], "--preprocess", same] + common)
    stored = [p.value for p in onnx.load(outs["pp"]).metadata_props if p.key == "onnx_tl.preprocess"]
    want = dict(own, mean=[0.3], std=[0.4])
    check(len(stored) == 1 and json.loads(stored[0]) == want, f"OUT preprocessing {stored}, want {want}")
    wp, wq, ws = weights(outs["plain"]), weights(outs["pp"]), weights(outs["same"])
    check(any(not np.array_equal(wp[k], wq[k]) for k in wp), "--preprocess mean 0.3: weights equal to the plain run")
    check(all(np.array_equal(wp[k], ws[k]) for k in wp), "--preprocess equal to the model's: weights differ")
    bad = os.path.join(work, "bad.json")
    open(bad, "w").write('{"mean": [0.3, 1]}')
    p = run([tl, "train", sw, "-o", os.path.join(work, "x.onnx"), "--preprocess", bad] + common, expect=1)
    check("bad.json" in p.stderr, f"bad JSON: message names the file: {p.stderr.strip()}")
    run([tl, "train", sw, "-o", os.path.join(work, "x.onnx"), "--preprocess", pj, "--resume", work] + common, expect=2)
    run([tl, "train", sw, "-o", pj, "--preprocess", pj] + common, expect=2)
    check(json.load(open(pj)) == {"mean": [0.3], "std": [0.4]}, "the --preprocess file was modified")
    print("OK" if not FAILS else f"{len(FAILS)} failures")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
