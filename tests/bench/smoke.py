#!/usr/bin/python3
"""smoke.py - the benchmark scripts of bench/ still run end to end (a smoke test, not a measurement).

    smoke.py SRC ONNX_TL TRAIN_STEP NODE MODELS_DIR

bench/ is run on demand, so nothing else notices when a change breaks it. At toy sizes (batch 2,
one step or repetition, one round; the timings mean nothing and are not checked) this runs, with
OTL_BENCH_MODELS=MODELS_DIR (the exported torchvision models go there, not into the source tree):
  - bench/forward --models mobilenet_v2 --json: onnx-tl, ONNX Runtime and PyTorch all timed, onnx-tl's
    output within 1e-4 of ONNX Runtime's;
  - bench/train --models resnet18 --modes full,head --json: both engines in both modes, finite
    images/s and ratios, onnx-tl's peak RSS below PyTorch's;
  - bench/train_epochs --samples 8 --epochs 2 --json: the feature cache used, finite ratios;
  - the peak RSS train_step reports is its own: started from a parent holding 600 MB it reports
    less than 300 MB for tiny_resnet (getrusage's ru_maxrss, which bench/ used before, carries the
    parent's RSS across fork and exec and reported more than 600 MB).
Exit status 0 when all hold, 1 otherwise.
"""
import json
import math
import os
import subprocess
import sys

FAILS = []


def check(cond, msg):
    if not cond:
        FAILS.append(msg)
        print("FAIL:", msg)


def run_json(cmd, env):
    print("$", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if p.returncode:
        check(False, f"{' '.join(cmd[:2])}: exit {p.returncode}: {p.stderr.strip()[-2000:]}")
        return None
    try:
        return json.loads(p.stdout)
    except ValueError as e:
        check(False, f"{' '.join(cmd[:2])}: no JSON on stdout ({e}): {p.stdout[-500:]}")
        return None


def finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    src, tl, ts, node, models = sys.argv[1:]
    env = dict(os.environ, OTL_BENCH_MODELS=models)
    b = os.path.join(src, "bench")

    fw = run_json([os.path.join(b, "forward"), "--onnx-tl", tl, "--node", node, "--models", "mobilenet_v2",
                   "--batch", "2", "--reps", "1", "--rounds", "1", "--torch-budget", "1", "--json"], env)
    if fw:
        r = fw.get("models", {}).get("mobilenet_v2", {})
        for eng in ("onnx-tl", "ORT", "PyTorch"):
            check(finite(r.get(eng, {}).get("images_per_s")), f"bench/forward: {eng} not timed: {r.get(eng)}")
        err = r.get("max_rel_err_vs_ort")
        check(isinstance(err, float) and err < 1e-4, f"bench/forward: max rel err vs ORT {err}")

    tr = run_json([os.path.join(b, "train"), "--train-step", ts, "--models", "resnet18", "--modes", "full,head",
                   "--batch", "2", "--steps", "1", "--warmup", "1", "--rounds", "1", "--json"], env)
    if tr:
        rows = {(x.get("model"), x.get("mode")): x for x in tr.get("results", [])}
        for mode in ("full", "head"):
            x = rows.get(("resnet18", mode), {})
            for eng in ("onnx-tl", "torch"):
                e = x.get(eng, {})
                check(finite(e.get("img_s")) and finite(e.get("peak_rss_mb")), f"bench/train {mode} {eng}: {e}")
            check(finite(x.get("img_s_ratio")) and finite(x.get("rss_ratio")), f"bench/train {mode}: ratios {x}")
            check(x.get("rss_ratio", 9) < 1, f"bench/train {mode}: onnx-tl peak RSS not below PyTorch's at batch 2: {x}")

    ep = run_json([os.path.join(b, "train_epochs"), "--onnx-tl", tl, "--samples", "8", "--epochs", "2",
                   "--batch", "4", "--torch-steps", "1", "--json"], env)
    if ep:
        check(ep.get("cache_used") is True, f"bench/train_epochs: feature cache not used: {ep}")
        for k in ("epoch1_ratio", "later_ratio", "later_wall_ratio"):
            check(finite(ep.get(k)), f"bench/train_epochs: {k} = {ep.get(k)}")

    # train_step's peak RSS from a parent holding 600 MB
    ballast = bytearray(600 << 20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    p = subprocess.run([ts, os.path.join(src, "testdata", "models", "tiny_resnet.onnx"), "--batch", "2", "--steps",
                        "1", "--warmup", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    del ballast
    try:
        rss = json.loads(p.stdout.splitlines()[-1])["peak_rss_kb"] / 1024
    except (ValueError, IndexError, KeyError):
        rss = None
    print(f"train_step tiny_resnet started from a 600 MB parent: peak RSS {rss} MB")
    check(p.returncode == 0 and rss is not None and rss < 300,
          f"train_step peak RSS {rss} MB from a 600 MB parent (exit {p.returncode}: {p.stderr.strip()[-300:]})")

    print("OK" if not FAILS else f"{len(FAILS)} failures")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
