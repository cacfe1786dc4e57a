#!/usr/bin/python3
"""The `parity.zoo` test: check_parity.py on every torchvision zoo model.

    /usr/bin/python3 tests/parity/run_parity_zoo.py ONNX_TL ZOODIR WORKDIR [--batches 1,8]
        [--node NODE] [--ort-run PATH] [--threads N] [--seed S] NAME...

ZOODIR/NAME.onnx must already exist: the models are made by tests/zoo/make_zoo.py, which the
CTest fixture test `zoo.generate` runs before this one (so that two tests never write the
same files at once). A missing model is a failure. Every model is checked; the failures are
listed at the end (with the first problem of each) and the exit status is then 1.
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK = os.path.join(HERE, "check_parity.py")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("onnx_tl")
    ap.add_argument("zoodir")
    ap.add_argument("workdir")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--node", default=None)
    ap.add_argument("--ort-run", default=None)
    ap.add_argument("--threads", default=None)
    ap.add_argument("--seed", default=None)
    ap.add_argument("names", nargs="+")
    args = ap.parse_args()

    t0 = time.time()
    failed = []
    for n in args.names:
        model = os.path.join(args.zoodir, n + ".onnx")
        if not os.path.isfile(model):
            msg = f"{model} does not exist (made by tests/zoo/make_zoo.py: the zoo.generate test)"
            sys.stderr.write(f"run_parity_zoo.py: {msg}\n")
            failed.append((n, msg))
            continue
        cmd = [sys.executable, CHECK, args.onnx_tl, model, os.path.join(args.workdir, n),
               "--batches", args.batches]
        for opt in ("node", "ort_run", "threads", "seed"):
            if getattr(args, opt) is not None:
                cmd += ["--" + opt.replace("_", "-"), str(getattr(args, opt))]
        sys.stdout.flush()
        p = subprocess.run(cmd, stderr=subprocess.PIPE)
        err = p.stderr.decode("utf-8", "replace")
        sys.stderr.write(err)
        if p.returncode != 0:
            first = next((l for l in err.splitlines() if ": FAIL: " in l),
                         err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}")
            failed.append((n, first))
    dt = time.time() - t0
    if failed:
        sys.stderr.write(f"run_parity_zoo.py: {len(failed)} of {len(args.names)} zoo models FAILED "
                         f"parity ({dt:.0f}s):\n")
        for n, first in failed:
            sys.stderr.write(f"run_parity_zoo.py:   {n}: {first[:500]}\n")
        return 1
    print(f"run_parity_zoo.py: all {len(args.names)} zoo models match ONNX Runtime ({dt:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
