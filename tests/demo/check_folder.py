#!/usr/bin/python3
"""Test of tools/fashion_folder.c (the demo's Fashion-MNIST -> ImageFolder converter).

usage: check_folder.py FASHION_FOLDER WORKDIR [--data-dir DIR]

Checks, reading the idx files independently with gzip + numpy and the PNGs with PIL:
  - train split, 7 images per class of classes 5,6,8 with a seed: one directory per class named
    <k>-<Class-name> (sorted = label order), exactly 7 PNGs each, every PNG grayscale 28x28 and
    pixel-identical to the idx image its name points to, whose label is the directory's class;
  - the same call again gives the same files; another seed gives another choice; --skip 7
    with the same seed gives 5 other images per class, none of the first 7 (disjoint sets);
  - test split, all images of classes 9 and 0: as many PNGs as the labels file has (1000 each);
  - bad usage exits 2, a missing data directory exits 1, each with one line naming the problem.
Exit status 0 only when every check passes.
"""
import argparse
import gzip
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

NAMES = ["0-T-shirt-top", "1-Trouser", "2-Pullover", "3-Dress", "4-Coat", "5-Sandal", "6-Shirt", "7-Sneaker",
         "8-Bag", "9-Ankle-boot"]
failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}", file=sys.stderr)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def run(tool, *args):
    return subprocess.run([tool, *args], capture_output=True, text=True)


def listing(out):
    return {d: sorted(os.listdir(os.path.join(out, d))) for d in sorted(os.listdir(out))}


def check_tree(out, split, classes, per_class, images, labels):
    tree = listing(out)
    want_dirs = [NAMES[c] for c in sorted(classes)]
    if list(tree) != want_dirs:
        fail(f"{out}: directories {list(tree)}, expected {want_dirs}")
        return tree
    for c in sorted(classes):
        files = tree[NAMES[c]]
        n_want = per_class if per_class else int((labels == c).sum())
        if len(files) != n_want:
            fail(f"{out}/{NAMES[c]}: {len(files)} files, expected {n_want}")
        for f in files:
            if not (f.startswith(split + "-") and f.endswith(".png")):
                fail(f"{out}/{NAMES[c]}/{f}: unexpected file name")
                continue
            i = int(f[len(split) + 1:-4])
            if labels[i] != c:
                fail(f"{out}/{NAMES[c]}/{f}: image {i} has label {labels[i]}, not {c}")
            if per_class == 0 and f != files[0] and i % 97 != 0:
                continue  # all-images case: decode a sample only
            im = Image.open(os.path.join(out, NAMES[c], f))
            if im.mode != "L" or im.size != (28, 28):
                fail(f"{out}/{NAMES[c]}/{f}: mode {im.mode} size {im.size}, expected L 28x28")
                continue
            if not np.array_equal(np.asarray(im), images[i]):
                fail(f"{out}/{NAMES[c]}/{f}: pixels differ from image {i} of the idx file")
    return tree


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tool")
    ap.add_argument("workdir")
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    dd = a.data_dir
    tr_x = read_idx(os.path.join(dd, "train-images-idx3-ubyte.gz"))
    tr_y = read_idx(os.path.join(dd, "train-labels-idx1-ubyte.gz"))
    te_x = read_idx(os.path.join(dd, "t10k-images-idx3-ubyte.gz"))
    te_y = read_idx(os.path.join(dd, "t10k-labels-idx1-ubyte.gz"))

    outs = {}
    for tag, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out = os.path.join(a.workdir, tag, "nested")  # parents are created
        r = run(a.tool, "-o", out, "--split", "train", "--classes", "5,6,8", "--per-class", "7", "--seed", seed,
                "--data-dir", dd)
        if r.returncode != 0:
            fail(f"train run {tag}: exit {r.returncode}: {r.stderr.strip()}")
            continue
        outs[tag] = check_tree(out, "train", [5, 6, 8], 7, tr_x, tr_y)
    if "a" in outs and "b" in outs and outs["a"] != outs["b"]:
        fail("same seed, different choice of images")
    if "a" in outs and "c" in outs and outs["a"] == outs["c"]:
        fail("seeds 3 and 4 chose the same images")
    out = os.path.join(a.workdir, "skip")
    r = run(a.tool, "-o", out, "--classes", "5,6,8", "--per-class", "5", "--skip", "7", "--seed", "3", "--data-dir", dd)
    if r.returncode != 0:
        fail(f"--skip run: exit {r.returncode}: {r.stderr.strip()}")
    elif "a" in outs:
        skipped = check_tree(out, "train", [5, 6, 8], 5, tr_x, tr_y)
        for d, files in skipped.items():
            if set(files) & set(outs["a"].get(d, [])):
                fail(f"--skip 7: {d} shares images with the first 7 of the same seed")

    out = os.path.join(a.workdir, "test")
    r = run(a.tool, "-o", out, "--split", "test", "--classes", "9,0", "--data-dir", dd)
    if r.returncode != 0:
        fail(f"test run: exit {r.returncode}: {r.stderr.strip()}")
    else:
        check_tree(out, "test", [0, 9], 0, te_x, te_y)

    bad = [(["--classes", "5,5"], 2), (["--classes", "x"], 2), (["--split", "val"], 2), (["--per-class", "-1"], 2),
           (["--bogus", "1"], 2), ([], 2), (["--per-class", "7000"], 1), (["--skip", "6000"], 1), (["--skip", "x"], 2), (["--data-dir", "/nonexistent"], 1)]
    for args, want in bad:
        full = args + ["-o", os.path.join(a.workdir, "bad")] if args else []
        r = run(a.tool, *full)
        first = r.stderr.strip().splitlines()[:1]
        if r.returncode != want or not first or not first[0].startswith("fashion_folder: "):
            fail(f"fashion_folder {' '.join(full)}: exit {r.returncode} (expected {want}), stderr {r.stderr!r}")
    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        return 1
    print("fashion_folder: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
