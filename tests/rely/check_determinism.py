#!/usr/bin/python3
"""check_determinism.py ONNX_TL MODELS_DIR WORKDIR - run and grad are reproducible.

For every testdata model (tiny_mlp, tiny_resnet, tiny_mobilenet, tiny_encoder, fashion_cnn when
present), `run` and `grad` (same --seed, same --threads; 1 and 2 threads) in two separate processes
must write bit-identical files: every output .npy, loss.npy and every gradient. Inputs come from the
model's declared input (batch 2, dims from `info --json`, symbolic dims set to 2 or 8); grad uses
cross-entropy against int64 class ids when the first output is (batch, classes), MSE otherwise.
Also checks that the two processes' files are not trivially empty (a gradient that is all zeros
everywhere is reported: nothing to compare).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np

MODELS = ["tiny_mlp.onnx", "tiny_resnet.onnx", "tiny_mobilenet.onnx", "tiny_encoder.onnx", "fashion_cnn.onnx"]


def files(root):
    out = {}
    for dp, dns, fns in os.walk(root):
        for n in fns:
            p = os.path.join(dp, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def run(exe, args):
    p = subprocess.run([exe] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=600)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def main():
    exe, models, work = os.path.abspath(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    fails = []
    checked = 0
    for mname in MODELS:
        model = os.path.join(models, mname)
        if not os.path.exists(model):
            if mname != "fashion_cnn.onnx":
                fails.append("%s: missing" % mname)
            continue
        p = subprocess.run([exe, "info", model, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode:
            fails.append("%s: info failed: %s" % (mname, p.stderr.decode()))
            continue
        info = json.loads(p.stdout)
        rng = np.random.default_rng(11)
        feed = []
        for k, inp in enumerate(info["inputs"]):
            shape = [d if isinstance(d, int) and d > 0 else (2 if i == 0 else 8)
                     for i, d in enumerate(inp["shape"] or [])]
            if shape:
                shape[0] = 2
            dt = np.dtype({"float32": np.float32, "int64": np.int64, "int32": np.int32}.get(inp["dtype"], np.float32))
            if dt.kind == "i":
                arr = rng.integers(0, 4, size=shape).astype(dt)
            else:
                arr = rng.standard_normal(shape).astype(dt)
            f = os.path.join(work, "%s.in%d.npy" % (mname, k))
            np.save(f, arr)
            feed += ["--input", "%s=%s" % (inp["name"], f)]
        for threads in (1, 2):
            tag = "%s threads=%d" % (mname, threads)
            # run, twice
            outs = []
            for rep in range(2):
                d = os.path.join(work, "%s.run.t%d.%d" % (mname, threads, rep))
                rc, err = run(exe, ["run", model] + feed + ["--outdir", d, "--threads", str(threads)])
                if rc:
                    fails.append("%s: run failed: %s" % (tag, err.strip()))
                    break
                outs.append(files(d))
            if len(outs) == 2:
                checked += 1
                if outs[0] != outs[1] or not outs[0]:
                    diff = sorted(k for k in set(outs[0]) | set(outs[1]) if outs[0].get(k) != outs[1].get(k))
                    fails.append("%s: run outputs differ between two processes: %s" % (tag, diff))
                else:
                    print("ok   %s: run, %d outputs bit-identical" % (tag, len(outs[0])), flush=True)
            # grad, twice
            y0 = np.load(os.path.join(work, "%s.run.t%d.0" % (mname, threads),
                                      sorted(outs[0])[0])) if outs else None
            if y0 is None:
                continue
            tgt = os.path.join(work, "%s.target.npy" % mname)
            if y0.ndim == 2 and y0.shape[1] > 1:
                np.save(tgt, (np.arange(y0.shape[0]) % y0.shape[1]).astype(np.int64))
                loss = "ce"
            else:
                np.save(tgt, (rng.standard_normal(y0.shape) * 0.1).astype(np.float32))
                loss = "mse"
            grads = []
            for rep in range(2):
                d = os.path.join(work, "%s.grad.t%d.%d" % (mname, threads, rep))
                rc, err = run(exe, ["grad", model] + feed + ["--target", tgt, "--loss", loss, "-o", d,
                                                             "--threads", str(threads), "--seed", "5"])
                if rc:
                    fails.append("%s: grad failed: %s" % (tag, err.strip()))
                    break
                grads.append(files(d))
            if len(grads) == 2:
                checked += 1
                n_grad = sum(1 for k in grads[0] if k.startswith("grad"))
                if grads[0] != grads[1] or not n_grad:
                    diff = sorted(k for k in set(grads[0]) | set(grads[1]) if grads[0].get(k) != grads[1].get(k))
                    fails.append("%s: grad files differ between two processes (or none): %s" % (tag, diff[:20]))
                else:
                    d = os.path.join(work, "%s.grad.t%d.0" % (mname, threads))
                    nz = sum(1 for k in grads[0] if k.startswith("grad") and np.any(np.load(os.path.join(d, k))))
                    if not nz:
                        fails.append("%s: every gradient is zero: nothing was compared" % tag)
                    print("ok   %s: grad (%s), loss and %d gradients bit-identical (%d non-zero)" %
                          (tag, loss, n_grad, nz), flush=True)
    for f in fails:
        print("FAIL " + f)
    print("check_determinism.py: %d comparisons, %d failures" % (checked, len(fails)))
    return 1 if fails or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
