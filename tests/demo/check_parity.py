#!/usr/bin/python3
"""Accuracy parity on the demo task: the fine-tuning recipe of tools/demo.sh run by onnx-tl and by
PyTorch (tests/demo/torch_recipe.py) reaches the same validation accuracy.

usage: check_parity.py ONNX_TL FASHION_FOLDER WORKDIR [--seeds 1,2] [--tolerance 1.5]
           [--val-per-class 200] [--data-dir DIR] [--python PYTHON]

Data (tools/fashion_folder, as in the demo): Fashion-MNIST classes 5-9, 50 training images per
class, 200 other training images per class as the validation set (data seed 1, the demo's).
For each seed S:
  onnx-tl: swap-head (5 classes, --seed S) -> freeze --all-but-head -> train the head (10 epochs,
           Adam lr 0.01, batch 25, --bn frozen) -> freeze --unfreeze '*' -> train everything
           (10 epochs, Adam lr 0.001, --layer-lr-decay 0.8, --bn train); the validation accuracy
           is the one of the kept (best) model, read from the JSONL log;
  PyTorch: torch_recipe.py on the same swapped model (--keep-head: the same initial head), same
           phases, epochs, batch, optimizer, learning rates, BN modes; shuffling seeded by S
           (PyTorch's generator: the batch order differs from onnx-tl's).
The two implementations share the data and the starting weights; what differs is the batch order
and the arithmetic, so single runs differ by a few points (the validation accuracy moves by
1-3 points from epoch to epoch on 250 images). The check is on the mean over the seeds:
|mean onnx-tl - mean PyTorch| <= tolerance (points). Every number is printed.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LABELS = ["5-Sandal", "6-Shirt", "7-Sneaker", "8-Bag", "9-Ankle-boot"]
RECIPE = dict(batch=25, head_epochs=10, head_lr=0.01, ft_epochs=10, ft_lr=0.001, decay=0.8)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(f"command failed (exit {r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}")
        sys.exit(1)
    return r.stdout


def best_val(log_path):
    with open(log_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        sys.stderr.write(f"{log_path}: empty log\n")
        sys.exit(1)
    return max(r["val_acc"] for r in rows)


def otl_recipe(a, w, seed, train, val):
    r = RECIPE
    tl = a.onnx_tl
    sw, ho, ht, uf, ft = (f"{w}/s{seed}_{n}.onnx" for n in ("swapped", "head_only", "head", "unfrozen", "ft"))
    common = ["--data", train, "--val", val, "--batch", str(r["batch"]), "--optimizer", "adam", "--seed", str(seed),
              "--quiet", "--threads", "2"]
    run([tl, "swap-head", a.model, "-o", sw, "--classes", "5", "--labels", f"{w}/labels.txt", "--seed", str(seed)])
    run([tl, "freeze", sw, "-o", ho, "--all-but-head"])
    run([tl, "train", ho, *common, "-o", ht, "--epochs", str(r["head_epochs"]), "--lr", str(r["head_lr"]),
         "--bn", "frozen", "--log", f"{w}/s{seed}_head.jsonl"])
    run([tl, "freeze", ht, "-o", uf, "--unfreeze", "*"])
    run([tl, "train", uf, *common, "-o", ft, "--epochs", str(r["ft_epochs"]), "--lr", str(r["ft_lr"]),
         "--layer-lr-decay", str(r["decay"]), "--bn", "train", "--log", f"{w}/s{seed}_ft.jsonl"])
    return sw, best_val(f"{w}/s{seed}_ft.jsonl")


def torch_recipe(a, swapped, seed, train, val):
    r = RECIPE
    out = run([a.python, os.path.join(HERE, "torch_recipe.py"), swapped, "--train", train, "--val", val, "--seed",
               str(seed), "--keep-head", "--head-epochs", str(r["head_epochs"]), "--ft-epochs", str(r["ft_epochs"]),
               "--batch", str(r["batch"]), "--optimizer", "adam", "--lr-head", str(r["head_lr"]), "--lr-ft",
               str(r["ft_lr"]), "--layer-lr-decay", str(r["decay"]), "--threads", "2", "--json"])
    return json.loads(out)["val_acc"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx_tl")
    ap.add_argument("fashion_folder")
    ap.add_argument("workdir")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--tolerance", type=float, default=1.5)
    ap.add_argument("--val-per-class", type=int, default=200)
    ap.add_argument("--model", default=os.path.join(HERE, "..", "..", "testdata", "models", "fashion_cnn.onnx"))
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--python", default=sys.executable)
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    w = a.workdir
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)
    train, val = f"{w}/train", f"{w}/val"
    run([a.fashion_folder, "-o", train, "--per-class", "50", "--seed", "1", "--data-dir", a.data_dir])
    run([a.fashion_folder, "-o", val, "--per-class", str(a.val_per_class), "--skip", "50", "--seed", "1",
         "--data-dir", a.data_dir])
    with open(f"{w}/labels.txt", "w") as f:
        f.write("\n".join(LABELS) + "\n")

    otl, ref = [], []
    for s in seeds:
        t0 = time.time()
        swapped, v_otl = otl_recipe(a, w, s, train, val)
        t1 = time.time()
        v_ref = torch_recipe(a, swapped, s, train, val)
        t2 = time.time()
        otl.append(v_otl)
        ref.append(v_ref)
        print(f"seed {s}: validation accuracy onnx-tl {100 * v_otl:.2f}% ({t1 - t0:.0f} s), "
              f"PyTorch {100 * v_ref:.2f}% ({t2 - t1:.0f} s)", flush=True)
    m_otl, m_ref = 100 * sum(otl) / len(otl), 100 * sum(ref) / len(ref)
    diff = m_otl - m_ref
    print(f"mean over {len(seeds)} seeds: onnx-tl {m_otl:.2f}%, PyTorch {m_ref:.2f}%, difference {diff:+.2f} points "
          f"(tolerance {a.tolerance})")
    if abs(diff) > a.tolerance:
        print("FAIL: the validation accuracies differ by more than the tolerance", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
