#!/usr/bin/python3
"""Frozen pruning is real (issue 4): with everything but the classifier head frozen, `onnx-tl
grad` costs about what `onnx-tl run` costs at the same batch.

    frozen_cost.py ONNX_TL MODEL.onnx WORKDIR [--batch 16] [--rounds 3] [--threads 2]
                   [--max-rss 1.15] [--max-time 1.3]

Writes WORKDIR/headonly.onnx (MODEL with metadata onnx_tl.frozen listing every initializer
but the head Gemm's), a seeded input batch and int64 targets, then runs `run` and `grad`
alternately, ROUNDS times each, every process measured by os.wait4: peak RSS (ru_maxrss), CPU
time (user + system) and wall time. Asserts
  - peak RSS of grad <= max-rss x peak RSS of run (max over the rounds of each),
  - median CPU time of grad <= max-time x median CPU time of run,
  - grad wrote exactly the head's gradients, finite and not all zero.
CPU time rather than wall time is what the bound checks: on a shared 2-core machine wall time
swings by tens of percent with other processes, CPU time much less; the wall-time ratio is
printed too. Both commands load the same model and read the same input, so fixed costs cancel.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import onnx


def measure(cmd):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit("frozen_cost: %s failed (exit %d): %s" % (" ".join(cmd), code, err.strip()))
    return dict(rss_kb=ru.ru_maxrss, cpu=ru.ru_utime + ru.ru_stime, wall=wall)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx_tl")
    ap.add_argument("model")
    ap.add_argument("workdir")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-rss", type=float, default=1.15)
    ap.add_argument("--max-time", type=float, default=1.3)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    m = onnx.load(a.model)
    gemms = [n for n in m.graph.node if n.op_type == "Gemm"]
    if not gemms:
        sys.exit("frozen_cost: %s has no Gemm head" % a.model)
    head = set(gemms[-1].input)
    inits = {i.name for i in m.graph.initializer}
    frozen = sorted(n for n in inits if n not in head)
    trainable = sorted(inits & head)
    del m.metadata_props[:]
    p = m.metadata_props.add()
    p.key, p.value = "onnx_tl.frozen", "\n".join(frozen) + "\n"
    headonly = os.path.join(a.workdir, "headonly.onnx")
    onnx.save(m, headonly)
    inp = m.graph.input[0]
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    shape[0] = a.batch
    rs = np.random.RandomState(0)
    x = os.path.join(a.workdir, "x.npy")
    y = os.path.join(a.workdir, "y.npy")
    np.save(x, rs.randn(*shape).astype(np.float32))
    classes = [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim][-1] or 10
    np.save(y, rs.randint(0, classes, a.batch).astype(np.int64))
    th = ["--threads", str(a.threads)]
    run_cmd = [a.onnx_tl, "run", a.model, "--input", "%s=%s" % (inp.name, x),
               "--outdir", os.path.join(a.workdir, "run")] + th
    grad_dir = os.path.join(a.workdir, "grad")
    grad_cmd = [a.onnx_tl, "grad", headonly, "--input", "%s=%s" % (inp.name, x), "--target", y,
                "-o", grad_dir] + th
    runs, grads = [], []
    for r in range(a.rounds):
        runs.append(measure(run_cmd))
        grads.append(measure(grad_cmd))
        print("round %d: run %.2f s cpu %.2f s %d MB | grad %.2f s cpu %.2f s %d MB" % (
            r, runs[-1]["wall"], runs[-1]["cpu"], runs[-1]["rss_kb"] // 1024,
            grads[-1]["wall"], grads[-1]["cpu"], grads[-1]["rss_kb"] // 1024))
    got = sorted(f[:-4] for f in os.listdir(os.path.join(grad_dir, "grad")))
    want = sorted(n.replace("/", "_").replace(":", "_") for n in trainable)
    ok = True
    if got != want:
        print("FAIL: gradients written for %s, expected exactly the head's %s" % (got, want))
        ok = False
    for f in got:
        g = np.load(os.path.join(grad_dir, "grad", f + ".npy"))
        if not np.all(np.isfinite(g)) or not np.any(g):
            print("FAIL: gradient %s is not finite or all zero" % f)
            ok = False
    rss = max(g["rss_kb"] for g in grads) / max(r["rss_kb"] for r in runs)
    cpu = statistics.median(g["cpu"] for g in grads) / statistics.median(r["cpu"] for r in runs)
    wall = statistics.median(g["wall"] for g in grads) / statistics.median(r["wall"] for r in runs)
    print("grad/run at batch %d: peak RSS %.3fx (bound %.2fx), CPU time %.3fx (bound %.2fx), "
          "wall time %.3fx; load average %s" % (a.batch, rss, a.max_rss, cpu, a.max_time, wall,
                                               " ".join("%.2f" % v for v in os.getloadavg())))
    if rss > a.max_rss:
        print("FAIL: peak RSS of grad is %.3fx that of run" % rss)
        ok = False
    if cpu > a.max_time:
        print("FAIL: CPU time of grad is %.3fx that of run" % cpu)
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
