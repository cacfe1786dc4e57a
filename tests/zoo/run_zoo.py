#!/usr/bin/python3
"""The `zoo.info` test: export the torchvision zoo (make_zoo.py, skipping files that exist),
then run tests/roundtrip/check_model.py on every zoo model (info comparison, export,
checker, lossless round trip, ONNX Runtime comparison at batch 1 only).

    /usr/bin/python3 tests/zoo/run_zoo.py ONNX_TL ZOODIR WORKDIR [--node NODE]
        [--ort-compare PATH] [--batches 1] [NAME...]

Exits 1 if any model fails (all models are checked; failures are listed at the end).
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK = os.path.join(os.path.dirname(HERE), "roundtrip", "check_model.py")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx_tl")
    ap.add_argument("zoodir")
    ap.add_argument("workdir")
    ap.add_argument("--node", default=None)
    ap.add_argument("--ort-compare", default=None)
    ap.add_argument("--batches", default="1")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()

    t0 = time.time()
    p = subprocess.run([sys.executable, os.path.join(HERE, "make_zoo.py"), args.zoodir]
                       + args.names)
    if p.returncode != 0:
        sys.stderr.write(f"run_zoo.py: make_zoo.py failed (exit {p.returncode})\n")
        return 1
    with open(os.path.join(args.zoodir, "expect.json")) as f:
        models = sorted(json.load(f))
    if args.names:
        models = [m for m in models if m[:-len(".onnx")] in args.names]

    failed = []
    for m in models:
        cmd = [sys.executable, CHECK, args.onnx_tl, os.path.join(args.zoodir, m),
               os.path.join(args.workdir, m[:-len(".onnx")]), "--batches", args.batches]
        if args.node:
            cmd += ["--node", args.node]
        if args.ort_compare:
            cmd += ["--ort-compare", args.ort_compare]
        sys.stdout.flush()
        if subprocess.run(cmd).returncode != 0:
            failed.append(m)
        # the re-exported copy is as big as the model: do not keep it around
        out = os.path.join(args.workdir, m[:-len(".onnx")], "out.onnx")
        if os.path.exists(out) and m not in failed:
            os.remove(out)
    dt = time.time() - t0
    if failed:
        sys.stderr.write(f"run_zoo.py: {len(failed)} of {len(models)} zoo models FAILED "
                         f"({dt:.0f}s): {' '.join(failed)}\n")
        return 1
    print(f"run_zoo.py: all {len(models)} zoo models OK ({dt:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
