#!/usr/bin/python3
"""check_layout.py - the channel-blocked convolution chains of graph/fuse.c + ops/conv.c (FusedConv
out_blocked, OTL_CONV_BLK) on whole models, from oneDNN's own log.

    check_layout.py ONNX_TL WORKDIR [--batch N] [--chain MODEL ...] [--mixed MODEL ...]

For every model, `ONNX_TL run MODEL --repeat 2` with ONEDNN_VERBOSE=1 (seeded random input of the
declared shape, batch N) and the same with OTL_CONV_BLK=0, then checks:
  - no oneDNN primitive of the second (timed) run uses a reference implementation ("ref" impl),
    in either mode: a reference convolution on nChw16c is 10-100x slower;
  - the two outputs agree (max relative error <= 1e-5: only the kernels' rounding differs);
  - --chain models (pure convolution chains such as MobileNetV2): every convolution writes nChw16c
    (aBcd16b) and reads the previous one's output without a reorder: the only reorders of the
    timed run are of tensors with spatial size 1 (the global pooling output before Flatten);
    with OTL_CONV_BLK=0 the convolutions write channels-last (acdb) instead, so the switch is live.
  - --mixed models (squeeze-excitation blocks, SiLU, channel split/concat): just the first two.
Exit status 0 when all checks pass, 1 otherwise (each failure printed), 2 on bad usage.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import onnx


def model_input(path, batch):
    m = onnx.load(path, load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    ins = [i for i in m.graph.input if i.name not in inits]
    if len(ins) != 1:
        raise SystemExit(f"{path}: expected one graph input, got {len(ins)}")
    dims = [d.dim_value if d.HasField("dim_value") else batch for d in ins[0].type.tensor_type.shape.dim]
    dims[0] = batch
    x = np.random.default_rng(7).standard_normal(dims).astype(np.float32)
    return ins[0].name, x


def run(exe, model, name, xfile, outdir, blk):
    env = dict(os.environ, ONEDNN_VERBOSE="1", OTL_CONV_BLK="1" if blk else "0")
    cmd = [exe, "run", model, "--input", f"{name}={xfile}", "--outdir", outdir, "--threads", "2", "--repeat", "2"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {p.returncode}):\n{p.stderr.decode()[-2000:]}")
    lines = [l for l in p.stdout.decode().splitlines() if l.startswith("onednn_verbose,") and ",exec," in l]
    outs = sorted(f for f in os.listdir(outdir) if f.endswith(".npy"))
    return lines, {f: np.load(os.path.join(outdir, f)) for f in outs}


def second_run(lines):
    """The exec lines of the timed run: the log's tail that repeats (the first run adds the
    one-time weight reorders)."""
    descs = [",".join(l.split(",")[:-1]) for l in lines]
    n = len(descs)
    for p in range(1, n // 2 + 1):
        if descs[n - p:] == descs[n - 2 * p:n - p]:
            return lines[n - p:]
    raise SystemExit("cannot split oneDNN's log into two identical runs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx_tl")
    ap.add_argument("workdir")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--chain", nargs="*", default=[])
    ap.add_argument("--mixed", nargs="*", default=[])
    a = ap.parse_args()
    if not a.chain and not a.mixed:
        ap.error("no models")
    os.makedirs(a.workdir, exist_ok=True)
    bad = []
    for model in a.chain + a.mixed:
        base = os.path.splitext(os.path.basename(model))[0]
        name, x = model_input(model, a.batch)
        xfile = os.path.join(a.workdir, f"{base}_x.npy")
        np.save(xfile, x)
        res = {}
        for blk in (1, 0):
            lines, outs = run(a.onnx_tl, model, name, xfile, os.path.join(a.workdir, f"{base}_blk{blk}"), blk)
            tail = second_run(lines)
            res[blk] = (tail, outs)
            refs = [l for l in tail if l.split(",")[4].startswith("ref")]
            for l in refs:
                bad.append(f"{base} (OTL_CONV_BLK={blk}): reference kernel: {l}")
            convs = [l for l in tail if l.split(",")[3] == "convolution"]
            print(f"{base} OTL_CONV_BLK={blk}: {len(tail)} primitives per run, {len(convs)} convolutions, "
                  f"{len(refs)} reference kernels, {sum(1 for l in tail if ',reorder,' in l)} reorders")
            if not convs:
                bad.append(f"{base}: no convolution in oneDNN's log")
            if model in a.chain:
                for l in convs:
                    dst = [f for f in l.split(",")[6].split() if f.startswith("dst_")]
                    want = "aBcd16b" if blk else "acdb"
                    if not dst or f":{want}:" not in dst[0]:
                        bad.append(f"{base} (OTL_CONV_BLK={blk}): a convolution does not write {want}: {l}")
                if blk:
                    for l in tail:
                        if ",reorder," in l:
                            dims = l.split(",")[-2].split("x")
                            if len(dims) == 4 and dims[2:] != ["1", "1"]:
                                bad.append(f"{base}: a reorder inside the blocked chain: {l}")
        for f, y1 in res[1][1].items():
            y0 = res[0][1].get(f)
            if y0 is None or y0.shape != y1.shape:
                bad.append(f"{base}: output {f} missing or of another shape with OTL_CONV_BLK=0")
                continue
            err = float(np.abs(y1.astype(np.float64) - y0).max() / max(float(np.abs(y0).max()), 1e-6))
            print(f"{base}: {f}: max relative error blocked vs OTL_CONV_BLK=0 {err:.2g}")
            if not err <= 1e-5:
                bad.append(f"{base}: output {f} differs between the layouts: max relative error {err:.3g}")
    for b in bad:
        print("FAIL: " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
