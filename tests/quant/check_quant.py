#!/usr/bin/env python3
"""check_quant.py - `onnx-tl export --quantize int8` (static QDQ, graph/quantize.c), one CTest entry per case.

usage: check_quant.py ONNX_TL NODE ORT_DIR FASHION_FOLDER WORKDIR CASE [--fashion-dir DIR]

Cases:
  kernels   fashion_cnn (demo model) and tiny_resnet (residual Adds): the int8 export passes
            onnx.checker (full_check), ONNX Runtime runs it, and ORT's optimized graph
            (tests/quant/ort_optimized.js, optimizedModelFilePath) has every Conv as QLinearConv, every
            Gemm as QGemm, every Add as QLinearAdd, GlobalAveragePool as QLinearGlobalAveragePool, and
            no float Conv/Gemm/Add/DequantizeLinear left (fails if ORT falls back to float); biases are
            int32 with scale x_scale * w_scale; folded Relus gone; MaxPool/Flatten share their input's
            scale and zero point.
  placement the demo architecture (fashion_cnn) in ORT's optimized graph at level 'all' (what
            bench/quant times): exactly float NCHWc Conv + MaxPool for the small first Conv (kept float
            by --conv-min-k's default 16; Relu and MaxPool swapped so that ORT keeps the pool in float),
            one QuantizeLinear, then QLinearConv/NhwcMaxPool/QLinearGlobalAveragePool/QGemm on uint8;
            no uint8 NCHW MaxPool, DequantizeLinear or Relu; --conv-min-k 0 quantizes every Conv;
            ORT and onnx-tl run it close to float; --conv-min-k usage errors.
  demo      the demo task's data (Fashion-MNIST via fashion_folder, classes 0-4 that fashion_cnn.onnx was
            trained on; calibration: 40 training images per class; evaluation: 200 test images per class):
            for each --calib-method (minmax, percentile, entropy) the int8 model's accuracy (onnx-tl
            eval and ONNX Runtime's integer kernels) is within 1.0 point of the float export's, and
            the int8 file is at most 0.3x the float file. Needs Debian's dataset-fashion-mnist.
  calib     the calibration methods against a numpy re-implementation on a model whose quantized
            activation is its input (known values): min/max exact; percentile (2048-bin histogram
            over [-t, t] grown by doubling, (100 - 99.999) / 2 % cut per side, clipped to min/max)
            and entropy (KL-optimal symmetric window, 128 levels) equal to the reference.
  subset    --calib-samples N draws a seeded random subset (not the first N items of a class-sorted
            set): same seed -> byte-identical model, other seed -> other ranges; the used count in
            the report.
  exclude   --exclude ' GLOB , GLOB' (spaces trimmed): those nodes keep float weights and read float
            data, the others are quantized; in ORT the excluded head Gemm stays float; a glob matching
            nothing is exit 1, an empty list exit 2.
  report    --report FILE.json schema (every field typed and in range; per-channel weight scales
            of the right length; activation SQNR finite and positive; sqnr_source one of two
            values) and -v's table on stderr; usage errors (bad --calib-method, --seed, --report
            naming OUT, report flags without --quantize int8): exit 2, nothing written.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ONNX_TL, NODE, ORT_DIR, FASHION_FOLDER, WORK, CASE = sys.argv[1:7]
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
if "--fashion-dir" in sys.argv:
    FASHION_DIR = sys.argv[sys.argv.index("--fashion-dir") + 1]
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODELS = os.path.join(ROOT, "testdata", "models")
FAILED = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILED.append(what)
    return cond


def run(args, expect=0):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=900)
    if p.returncode != expect:
        print(p.stdout[-2000:] + p.stderr[-2000:])
    check(p.returncode == expect, "exit %d (expected %d): %s" % (p.returncode, expect, " ".join(map(str, args[1:]))))
    return p


def tl(*args, expect=0):
    return run([ONNX_TL, *args], expect=expect)


def ort_kernels(model, d, opt=None, domains=False):
    out = os.path.join(d, os.path.basename(model) + ".ort%s.onnx" % (opt or ""))
    if run([NODE, os.path.join(HERE, "ort_optimized.js"), ORT_DIR, model, out] +
           (["--opt", opt] if opt else [])).returncode:
        return {}
    counts = {}
    for n in onnx.load(out).graph.node:
        k = (n.domain or "ai.onnx") + ":" + n.op_type if domains else n.op_type
        counts[k] = counts.get(k, 0) + 1
    return counts


def small_first_convs(m, min_k=16):
    """Convs reading a graph input, group 1, C_in*kh*kw < min_k: export keeps them float by default."""
    ini = inits_of(m)
    inputs = {i.name for i in m.graph.input}
    out = []
    for n in m.graph.node:
        g = [a.i for a in n.attribute if a.name == "group"]
        if n.op_type == "Conv" and n.input[0] in inputs and (not g or g[0] == 1) and n.input[1] in ini and \
                int(np.prod(ini[n.input[1]].shape[1:])) < min_k:
            out.append(n.name)
    return out


def ort_outputs(model, d, x):
    xp = os.path.join(d, "ort_in.npy")
    np.save(xp, x)
    od = os.path.join(d, "ort_out")
    shutil.rmtree(od, ignore_errors=True)
    p = run([NODE, os.path.join(ORT_DIR, "ort_run.js"), model, od, "--opt", "all", "--threads", "2",
             "--input", "input=" + xp])
    if p.returncode:
        return None
    files = sorted(os.listdir(od))
    return np.load(os.path.join(od, files[0])) if files else None


def inits_of(m):
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


def rand_npz(path, shape, n, seed=1):
    r = np.random.RandomState(seed)
    np.savez(path, x=r.randn(n, *shape).astype(np.float32), y=np.zeros(n, np.int64))


# ------------------------------------------------------------------ kernels

def case_kernels(d):
    for name, shape, ops in (("fashion_cnn", (1, 28, 28), {"Conv": "QLinearConv", "Gemm": "QGemm",
                                                          "GlobalAveragePool": "QLinearGlobalAveragePool"}),
                             ("tiny_resnet", None, {"Conv": "QLinearConv", "Add": "QLinearAdd", "Gemm": "QGemm"})):
        src = os.path.join(MODELS, name + ".onnx")
        fm = onnx.load(src)
        if shape is None:
            dims = fm.graph.input[0].type.tensor_type.shape.dim
            shape = tuple(x.dim_value for x in dims[1:])
        rand_npz(d + "/cal_%s.npz" % name, shape, 48)
        q = d + "/%s_int8.onnx" % name
        if tl("export", src, "-o", q, "--quantize", "int8", "--calib", d + "/cal_%s.npz" % name).returncode:
            continue
        m = onnx.load(q)
        try:
            onnx.checker.check_model(m, full_check=True)
            check(True, "%s int8: onnx.checker full_check" % name)
        except Exception as e:  # noqa: BLE001
            check(False, "%s int8: onnx.checker: %s" % (name, e))
        x = np.random.RandomState(3).randn(4, *shape).astype(np.float32)
        y = ort_outputs(q, d, x)
        check(y is not None and np.all(np.isfinite(y)), "%s int8: ONNX Runtime runs it" % name)
        k = ort_kernels(q, d)
        print("  ORT optimized graph:", sorted(k.items()))
        small = small_first_convs(fm)
        check(len(small) == (1 if name == "fashion_cnn" else 0), "%s: small first Convs kept float: %s" % (name, small))
        for fop, qop in ops.items():
            nf = sum(1 for n in fm.graph.node if n.op_type == fop)
            nk = len(small) if fop == "Conv" else 0
            check(nf > 0 and k.get(qop, 0) == nf - nk and k.get(fop, 0) == nk,
                  "%s: ORT runs %d of %d %s as %s, %d float (got %d, %d float)" % (
                      name, nf - nk, nf, fop, qop, nk, k.get(qop, 0), k.get(fop, 0)))
        check(k.get("DequantizeLinear", 0) == 0, "%s: no DequantizeLinear left in ORT's graph (no float fallback)"
              % name)
        # structure: int32 biases with x_scale * w_scale, no Relu, shared parameters through MaxPool/Flatten
        ini = inits_of(m)
        prod = {o: n for n in m.graph.node for o in n.output}
        ok_bias = True
        for n in m.graph.node:
            if n.op_type not in ("Conv", "Gemm") or len(n.input) < 3:
                continue
            bdq, xdq, wdq = prod.get(n.input[2]), prod.get(n.input[0]), prod.get(n.input[1])
            if n.name in small:
                ok_bias &= wdq is None and bdq is None  # kept float: float weight and bias
                continue
            if not (bdq and xdq and wdq and bdq.op_type == xdq.op_type == wdq.op_type == "DequantizeLinear"):
                ok_bias = False
                continue
            bs, ws, xs = ini[bdq.input[1]], ini[wdq.input[1]], ini[xdq.input[1]]
            ok_bias &= ini[bdq.input[0]].dtype == np.int32 and np.allclose(bs, xs * ws, rtol=1e-6)
        check(ok_bias, "%s: every Conv/Gemm bias is int32 behind a DequantizeLinear with scale x_scale * w_scale"
              % name)
        # a Relu stays only behind a float MaxPool (swapped with it: the float part ends there)
        check(all(n.op_type != "Relu" or (prod.get(n.input[0]) is not None and
                                          prod[n.input[0]].op_type == "MaxPool" and n.name in
                                          [x.name for x in m.graph.node if x.output[0] in
                                           {c.input[0] for c in m.graph.node if c.op_type == "QuantizeLinear"}])
                  for n in m.graph.node),
              "%s: Relus folded into the ranges (or right before a QuantizeLinear after a float MaxPool)" % name)
        shared = True
        for n in m.graph.node:
            if n.op_type in ("MaxPool", "Flatten") and prod.get(n.input[0]) is not None and \
                    prod[n.input[0]].op_type == "DequantizeLinear":
                dq = prod.get(n.input[0])
                qn = [c for c in m.graph.node if c.op_type == "QuantizeLinear" and c.input[0] == n.output[0]]
                shared &= bool(dq and dq.op_type == "DequantizeLinear" and len(qn) == 1 and
                               qn[0].input[1:] == dq.input[1:])
        check(shared, "%s: MaxPool/Flatten outputs reuse the input's scale and zero point" % name)


# ------------------------------------------------------------------ placement

# ORT's graph at level 'all' (what bench/quant times) for the demo architecture (fashion_cnn: the
# demo's fine-tuned model has the same layers). The expected multiset is what the placement yields:
# the first Conv (1 channel, K = 9) and its MaxPool in float NCHWc, one QuantizeLinear, then uint8
# NHWC end to end; no uint8 MaxPool in NCHW (ORT's generic kernel: ~13 ms per batch of 32 where the
# float pool takes 0.08 ms), no DequantizeLinear, no Relu, no float Conv/Gemm beyond the first Conv.
PLACEMENT_ALL = {"com.microsoft.nchwc:Conv": 1, "com.microsoft.nchwc:MaxPool": 1, "com.microsoft.nchwc:ReorderOutput": 1,
                 "ai.onnx:QuantizeLinear": 1, "ai.onnx:Transpose": 2, "com.microsoft:QLinearConv": 2,
                 "com.microsoft:NhwcMaxPool": 2, "com.microsoft:QLinearGlobalAveragePool": 1, "ai.onnx:Flatten": 1,
                 "com.microsoft:QGemm": 1}


def case_placement(d):
    src = os.path.join(MODELS, "fashion_cnn.onnx")
    rand_npz(d + "/cal.npz", (1, 28, 28), 48)
    x = np.random.RandomState(5).randn(8, 1, 28, 28).astype(np.float32)
    tl("export", src, "-o", d + "/float.onnx")
    yf = ort_outputs(d + "/float.onnx", d, x)
    for tag, extra in (("default", []), ("min-k 16", ["--conv-min-k", "16"]), ("min-k 0", ["--conv-min-k", "0"])):
        q = d + "/q_%s.onnx" % tag.replace(" ", "")
        if tl("export", src, "-o", q, "--quantize", "int8", "--calib", d + "/cal.npz", *extra).returncode:
            continue
        m = onnx.load(q)
        onnx.checker.check_model(m, full_check=True)
        k = ort_kernels(q, d, "all", domains=True)
        print("  %s: ORT 'all' graph: %s" % (tag, sorted(k.items())))
        if tag != "min-k 0":
            check(k == PLACEMENT_ALL, "%s: ORT's optimized graph (level all) is exactly the expected one" % tag)
            prod = {o: n for n in m.graph.node for o in n.output}
            first = m.graph.node[0]
            pool = [n for n in m.graph.node if n.op_type == "MaxPool" and n.input[0] == first.output[0]]
            relu = [n for n in m.graph.node if n.op_type == "Relu"]
            r = tl("export", src, "-o", d + "/qr.onnx", "--quantize", "int8", "--calib", d + "/cal.npz", *extra,
                   "--report", d + "/r.json")
            kf = json.load(open(d + "/r.json"))["kept_float"] if r.returncode == 0 else None
            check(kf == [{"node": first.name, "reason": "conv_min_k"}],
                  "%s: the report lists the first Conv as kept float (%s)" % (tag, kf))
            check(first.op_type == "Conv" and first.input[0] == "input" and
                  prod.get(first.input[1]) is None and len(pool) == 1 and len(relu) == 1 and
                  relu[0].input[0] == pool[0].output[0] and
                  [n.op_type for n in m.graph.node if relu[0].output[0] in n.input] == ["QuantizeLinear"],
                  "%s: float first Conv -> MaxPool -> Relu -> QuantizeLinear (Relu and MaxPool swapped)" % tag)
        else:
            want = {"com.microsoft:QLinearConv": 3, "com.microsoft:NhwcMaxPool": 3}
            check(all(k.get(op, 0) == v for op, v in want.items()) and
                  not any(op.endswith(":Conv") or op.endswith(":DequantizeLinear") or op == "ai.onnx:MaxPool"
                          for op in k),
                  "--conv-min-k 0: every Conv is a QLinearConv, every MaxPool NHWC uint8")
        y = ort_outputs(q, d, x)
        if y is not None and yf is not None:
            rel = float(np.abs(y - yf).max() / (yf.max() - yf.min()))
            check(rel < 0.05, "%s: ORT int8 output within 5%% of the float output's range (%.4f)" % (tag, rel))
        # onnx-tl runs the swapped graph too, and agrees with ORT
        np.save(d + "/x.npy", x)
        p = tl("run", q, "--input", "input=" + d + "/x.npy", "--outdir", d + "/tl_" + tag.replace(" ", ""))
        outs = sorted(os.listdir(d + "/tl_" + tag.replace(" ", ""))) if p.returncode == 0 else []
        if outs and y is not None:
            yt = np.load(d + "/tl_" + tag.replace(" ", "") + "/" + outs[0])
            rel = float(np.abs(yt - y).max() / (yf.max() - yf.min()))
            check(rel < 0.02, "%s: onnx-tl run agrees with ORT on the int8 model (%.4f)" % (tag, rel))
    for bad in ("-1", "x", "", "1.5"):
        tl("export", src, "-o", d + "/bad.onnx", "--quantize", "int8", "--calib", d + "/cal.npz", "--conv-min-k", bad,
           expect=2)
    tl("export", src, "-o", d + "/bad.onnx", "--conv-min-k", "8", expect=2)
    check(not os.path.exists(d + "/bad.onnx"), "usage errors write nothing")


# ------------------------------------------------------------------ demo

def eval_acc(model, data):
    p = tl("eval", model, "--data", data, "--by-index", "--json")
    try:
        return float(json.loads(p.stdout)["accuracy"]) * 100
    except Exception:  # noqa: BLE001
        return None


def folder_arrays(data):
    from PIL import Image
    xs, ys = [], []
    for k, c in enumerate(sorted(os.listdir(data))):
        for f in sorted(os.listdir(os.path.join(data, c))):
            a = np.asarray(Image.open(os.path.join(data, c, f)).convert("L"), np.float32) / 255.0
            xs.append((a - 0.5) / 0.5)
            ys.append(k)
    return np.stack(xs)[:, None], np.array(ys)


def case_demo(d):
    for split, extra in (("train", ["--per-class", "40", "--seed", "3"]), ("test", ["--per-class", "200"])):
        shutil.rmtree(d + "/" + split, ignore_errors=True)
        if run([FASHION_FOLDER, "-o", d + "/" + split, "--split", split, "--classes", "0,1,2,3,4",
                "--data-dir", FASHION_DIR, *extra]).returncode:
            return
    src = os.path.join(MODELS, "fashion_cnn.onnx")
    tl("export", src, "-o", d + "/float.onnx")
    acc_f = eval_acc(d + "/float.onnx", d + "/test")
    x, y = folder_arrays(d + "/test")
    yf = ort_outputs(d + "/float.onnx", d, x)
    acc_fo = float((yf.argmax(1) == y).mean() * 100) if yf is not None else None
    print("  float: onnx-tl %s %%, ORT %s %%" % (acc_f, acc_fo))
    check(acc_f is not None and acc_f > 80, "float export accuracy on classes 0-4 is sane (%s %%)" % acc_f)
    fsize = os.path.getsize(d + "/float.onnx")
    for method in ("minmax", "percentile", "entropy"):
        q = d + "/int8_%s.onnx" % method
        if tl("export", src, "-o", q, "--quantize", "int8", "--calib", d + "/train", "--calib-method", method).returncode:
            continue
        acc_q = eval_acc(q, d + "/test")
        yq = ort_outputs(q, d, x)
        acc_qo = float((yq.argmax(1) == y).mean() * 100) if yq is not None else None
        ratio = os.path.getsize(q) / fsize
        print("  %s: onnx-tl %s %%, ORT %s %%, file %.3fx" % (method, acc_q, acc_qo, ratio))
        check(acc_q is not None and acc_f is not None and abs(acc_q - acc_f) <= 1.0,
              "%s: onnx-tl int8 accuracy %s within 1.0 point of float %s" % (method, acc_q, acc_f))
        check(acc_qo is not None and acc_fo is not None and abs(acc_qo - acc_fo) <= 1.0,
              "%s: ORT (integer kernels) int8 accuracy %s within 1.0 point of float %s" % (method, acc_qo, acc_fo))
        check(ratio <= 0.3, "%s: int8 file %.3fx the float file (<= 0.3x)" % (method, ratio))


# ------------------------------------------------------------------ calib

QH_BINS = 2048


def ref_hist(batches):
    t, c = 0.0, np.zeros(QH_BINS)
    for v in batches:
        v = v.ravel().astype(np.float64)
        amax = float(np.abs(v).max())
        if t <= 0:
            t = amax if amax > 0 else 1e-30
        while amax > t:
            nc = np.zeros(QH_BINS)
            for j in range(QH_BINS):
                nc[QH_BINS // 4 + j // 2] += c[j]
            c, t = nc, t * 2
        k = QH_BINS / (2 * t)
        b = (v + t) * k
        bi = np.where(b < 0, 0, np.where(b >= QH_BINS, QH_BINS - 1, np.floor(b))).astype(np.int64)
        c += np.bincount(bi, minlength=QH_BINS)
    return t, c


def edge(t, i):
    return -t + i * (2 * t / QH_BINS)


def ref_percentile(t, c, vmin, vmax, pct=99.999):
    cdf = np.cumsum(c) / c.sum()
    cut = (100 - pct) / 200
    il = int(np.argmax(cdf >= cut))
    ir = int(np.argmax(cdf >= 1 - cut))
    return max(edge(t, il), vmin), min(edge(t, ir), vmax)


def smooth(p):
    eps = 1e-4
    nz = int((p == 0).sum())
    if nz == p.size:
        return None
    eps1 = eps * nz / (p.size - nz)
    p = p + np.where(p == 0, eps, -eps1)
    return None if (p <= 0).any() else p


def ref_entropy(t, c, vmin, vmax):
    nq, zero = 128, QH_BINS // 2
    best, bl, br = np.inf, vmin, vmax
    for i in range(nq // 2, zero + 1):
        s, e = zero - i, min(zero + i + 1, QH_BINS)
        ln = e - s
        p = c[s:e].copy()
        p[0] += c[:s].sum()
        p[-1] += c[e:].sum()
        m = ln // nq
        q = np.zeros(ln)
        for b in range(nq):
            s0, s1 = b * m, (ln if b == nq - 1 else b * m + m)
            tot = c[s + s0:s + s1].sum()
            nzc = int((p[s0:s1] != 0).sum())
            q[s0:s1] = np.where(p[s0:s1] != 0, tot / nzc if nzc else 0, 0)
        ps, qs = smooth(p), smooth(q)
        if ps is None or qs is None:
            continue
        ps, qs = ps / ps.sum(), qs / qs.sum()
        kl = float((ps * np.log(ps / qs)).sum())
        if kl < best:
            best, bl, br = kl, edge(t, s), edge(t, e)
    return max(bl, vmin), min(br, vmax)


def case_calib(d):
    # y = Conv1x1(x): the quantized activations are x itself and y
    w = np.array([[[[0.5]]]], np.float32)
    g = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["y"], "conv")], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, 4, 4])],
                          [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), d + "/conv.onnx")
    r = np.random.RandomState(5)
    x = np.concatenate([r.standard_t(3, size=(40, 1, 4, 4)), 3 * r.randn(40, 1, 4, 4) + 1]).astype(np.float32)
    np.savez(d + "/cal.npz", x=x, y=np.zeros(len(x), np.int64))
    batches = [x[i:i + 16] for i in range(0, len(x), 16)]
    t, c = ref_hist(batches)
    vmin, vmax = float(x.min()), float(x.max())
    ref = {"minmax": (vmin, vmax), "percentile": ref_percentile(t, c, vmin, vmax),
           "entropy": ref_entropy(t, c, vmin, vmax)}
    got = {}
    for method in ("minmax", "percentile", "entropy"):
        rep = d + "/rep_%s.json" % method
        if tl("export", d + "/conv.onnx", "-o", d + "/q_%s.onnx" % method, "--quantize", "int8", "--calib",
              d + "/cal.npz", "--calib-method", method, "--report", rep, "--conv-min-k", "0").returncode:
            continue
        j = json.load(open(rep))
        a = [e for e in j["tensors"] if e["name"] == "input"]
        if not check(len(a) == 1, "%s: the input is in the report" % method):
            continue
        got[method] = (a[0]["min"], a[0]["max"])
        lo, hi = ref[method]
        check(abs(a[0]["min"] - lo) <= 1e-5 * max(1, abs(lo)) and abs(a[0]["max"] - hi) <= 1e-5 * max(1, abs(hi)),
              "%s: range %s equals the reference %s" % (method, got[method], (lo, hi)))
        lo0, hi0 = min(lo, 0), max(hi, 0)
        m = onnx.load(d + "/q_%s.onnx" % method)
        ini = inits_of(m)
        qn = [n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input"][0]
        sc, zp = float(ini[qn.input[1]]), int(ini[qn.input[2]])
        check(abs(sc - (hi0 - lo0) / 255) <= 1e-6 * sc and zp == int(np.clip(np.rint(-lo0 / sc), 0, 255)),
              "%s: scale %g and zero point %d from the range" % (method, sc, zp))
    if len(got) == 3:
        check(got["percentile"][1] - got["percentile"][0] < got["minmax"][1] - got["minmax"][0] and
              got["entropy"][1] - got["entropy"][0] < got["minmax"][1] - got["minmax"][0],
              "percentile and entropy clip the heavy-tailed input's range (%s)" % got)


# ------------------------------------------------------------------ subset

def case_subset(d):
    src = os.path.join(MODELS, "fashion_cnn.onnx")
    # class-sorted: the first 100 items are all zero, the next 100 random
    x = np.zeros((200, 1, 28, 28), np.float32)
    x[100:] = np.random.RandomState(2).randn(100, 1, 28, 28)
    np.savez(d + "/sorted.npz", x=x, y=np.repeat(np.arange(2), 100).astype(np.int64))
    outs = {}
    for tag, seed in (("a", 0), ("b", 0), ("c", 7)):
        args = ["export", src, "-o", d + "/%s.onnx" % tag, "--quantize", "int8", "--calib", d + "/sorted.npz",
                "--calib-samples", "10", "--report", d + "/%s.json" % tag, "--conv-min-k", "0"]
        if tag != "a":
            args += ["--seed", str(seed)]
        if tl(*args).returncode:
            return
        outs[tag] = (open(d + "/%s.onnx" % tag, "rb").read(), json.load(open(d + "/%s.json" % tag)))
    check(outs["a"][0] == outs["b"][0], "same seed (default 0 and --seed 0): byte-identical models")
    check(outs["a"][0] != outs["c"][0], "--seed 7: another subset, another model")
    ja = outs["a"][1]
    inp = [e for e in ja["tensors"] if e["name"] == "input"][0]
    check(inp["max"] > 0.5 and inp["min"] < -0.5,
          "the subset is drawn from the whole set, not its first 10 (all-zero) items: input range %s"
          % ((inp["min"], inp["max"]),))
    check(ja["calib_samples"] == 10 and ja["calib_subset"] is True and ja["seed"] == 0,
          "report: 10 samples, a subset, seed 0")
    tl("export", src, "-o", d + "/all.onnx", "--quantize", "int8", "--calib", d + "/sorted.npz", "--calib-samples",
       "500", "--report", d + "/all.json", "--conv-min-k", "0")
    ja = json.load(open(d + "/all.json"))
    check(ja["calib_samples"] == 200 and ja["calib_subset"] is False, "--calib-samples above the size: every item")


# ------------------------------------------------------------------ exclude

def case_exclude(d):
    src = os.path.join(MODELS, "fashion_cnn.onnx")
    rand_npz(d + "/cal.npz", (1, 28, 28), 16)
    q = d + "/ex.onnx"
    if tl("export", src, "-o", q, "--quantize", "int8", "--calib", d + "/cal.npz", "--exclude",
          " *features.4* , /fc/* ", "--conv-min-k", "0").returncode == 0:
        m = onnx.load(q)
        ini = inits_of(m)
        byname = {n.name: n for n in m.graph.node}
        f4, fc, f0 = byname.get("/features/features.4/Conv"), byname.get("/fc/Gemm"), byname.get(
            "/features/features.0/Conv")
        check(f4 is not None and f4.input[1] in ini and ini[f4.input[1]].dtype == np.float32,
              "--exclude ' *features.4* ': that Conv keeps its float weight (spaces trimmed)")
        check(fc is not None and fc.input[1] in ini and ini[fc.input[1]].dtype == np.float32,
              "--exclude ' /fc/* ': the Gemm keeps its float weight")
        check(f0 is not None and f0.input[1] not in ini, "the other Convs are quantized")
        k = ort_kernels(q, d)
        # The excluded Conv reads float data and writes float in the file; ORT's own QDQ propagation and
        # weight quantization may still turn it into a QLinearConv between quantized neighbours (its
        # choice, not the file's), so only the head, whose output is the graph output, is checked there.
        check(k.get("QLinearConv", 0) >= 2 and k.get("QGemm", 0) == 0 and k.get("Gemm", 0) == 1,
              "ORT: the other Convs as QLinearConv, the excluded Gemm in float (%s)" % sorted(k.items()))
    tl("export", src, "-o", d + "/no.onnx", "--quantize", "int8", "--calib", d + "/cal.npz", "--exclude", "nomatch*",
       expect=1)
    tl("export", src, "-o", d + "/no.onnx", "--quantize", "int8", "--calib", d + "/cal.npz", "--exclude", " , ",
       expect=2)
    check(not os.path.exists(d + "/no.onnx"), "nothing written on errors")


# ------------------------------------------------------------------ report

def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def case_report(d):
    src = os.path.join(MODELS, "tiny_resnet.onnx")
    fm = onnx.load(src)
    dims = fm.graph.input[0].type.tensor_type.shape.dim
    shape = tuple(x.dim_value for x in dims[1:])
    rand_npz(d + "/cal.npz", shape, 24)
    rep, q = d + "/rep.json", d + "/q.onnx"
    p = tl("export", src, "-o", q, "--quantize", "int8", "--calib", d + "/cal.npz", "--calib-method", "percentile",
           "--report", rep, "-v")
    if p.returncode:
        return
    j = json.load(open(rep))
    top = {"model": str, "calib": str, "calib_method": str, "percentile": float, "calib_samples": int,
           "calib_subset": bool, "seed": int, "activation_type": str, "weight_type": str, "per_channel": bool,
           "sqnr_source": str, "sqnr_samples": int, "tensors": list, "kept_float": list}
    check(all(isinstance(j.get(k), t) for k, t in top.items()), "report: top-level keys and types %s" % sorted(j))
    check(j["calib_method"] == "percentile" and j["percentile"] == 99.999 and j["calib_samples"] == 24,
          "report: method, percentile, samples")
    check(j["sqnr_source"] in ("quantized_model", "calibration_values"), "report: sqnr_source %s" % j["sqnr_source"])
    m = onnx.load(q)
    ini = inits_of(m)
    ok = True
    kinds = {"activation": 0, "weight": 0, "bias": 0}
    wshape = {t.name: tuple(t.dims) for t in fm.graph.initializer}
    for e in j["tensors"]:
        kinds[e.get("kind")] = kinds.get(e.get("kind"), 0) + 1
        base = isinstance(e.get("name"), str) and isinstance(e.get("node"), str) and num(e.get("zero_point"))
        sc = e.get("scale")
        scs = sc if isinstance(sc, list) else [sc]
        base &= all(num(s) and s > 0 for s in scs)
        if e["kind"] == "activation":
            base &= 0 <= e["zero_point"] <= 255 and num(e["min"]) and num(e["max"]) and e["min"] <= e["max"]
            base &= num(e["sqnr_db"]) and e["sqnr_db"] > 0 and num(e["rel_error"]) and e["dtype"] == "uint8"
            base &= e["shared_with"] is None or isinstance(e["shared_with"], str)
        elif e["kind"] == "weight":
            base &= e["zero_point"] == 0 and e["dtype"] == "int8" and len(scs) == wshape.get(e["name"], (0,))[0]
            base &= (num(e["sqnr_db"]) and e["sqnr_db"] > 20) or e["sqnr_db"] == "inf"
        elif e["kind"] == "bias":
            base &= e["zero_point"] == 0 and e["dtype"] == "int32"
        else:
            base = False
        if not base:
            print("  bad entry:", e)
        ok &= base
    check(ok, "report: every tensor entry well-formed (%s)" % kinds)
    nconv = sum(1 for n in fm.graph.node if n.op_type in ("Conv", "Gemm"))
    check(kinds["weight"] == nconv and kinds["bias"] >= 1 and kinds["activation"] >= nconv,
          "report: one weight per Conv/Gemm (%d), biases and activations" % nconv)
    nq = sum(1 for n in m.graph.node if n.op_type == "QuantizeLinear")
    check(kinds["activation"] == nq, "report: one activation entry per QuantizeLinear (%d)" % nq)
    check("SQNR" in p.stderr and sum(1 for ln in p.stderr.splitlines() if ln.startswith("activation")) ==
          kinds["activation"], "-v: the per-tensor table on stderr")
    check(j["kept_float"] == [] and "kept float" not in p.stderr, "report: no Conv kept float (K = 27 >= 16)")
    conv = [n.name for n in fm.graph.node if n.op_type == "Conv"][-1]
    p = tl("export", src, "-o", d + "/qx.onnx", "--quantize", "int8", "--calib", d + "/cal.npz", "--exclude", conv,
           "--report", d + "/rx.json", "-v")
    if p.returncode == 0:
        kf = json.load(open(d + "/rx.json"))["kept_float"]
        check(kf == [{"node": conv, "reason": "exclude"}] and ("kept float: %s (--exclude)" % conv) in p.stderr,
              "report: the --exclude'd Conv listed as kept float (%s)" % kf)
    # usage errors: exit 2, nothing written
    for bad in (["--calib-method", "kl"], ["--seed", "-1"], ["--seed", "x"], ["--report", d + "/u.onnx"]):
        tl("export", src, "-o", d + "/u.onnx", "--quantize", "int8", "--calib", d + "/cal.npz", *bad, expect=2)
    for bad in (["--report", d + "/r.json"], ["--calib-method", "entropy"], ["--seed", "1"], ["-v"]):
        tl("export", src, "-o", d + "/u.onnx", *bad, expect=2)
    check(not os.path.exists(d + "/u.onnx") and not os.path.exists(d + "/r.json"), "usage errors write nothing")
    # a report that cannot be written fails the command before OUT exists
    tl("export", src, "-o", d + "/u.onnx", "--quantize", "int8", "--calib", d + "/cal.npz", "--report",
       d + "/no_such_dir/r.json", expect=1)
    check(not os.path.exists(d + "/u.onnx"), "unwritable --report: OUT not written")


def main():
    d = os.path.join(WORK, CASE)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    fn = globals().get("case_" + CASE)
    if fn is None:
        print("unknown case " + CASE)
        return 2
    fn(d)
    if FAILED:
        print("%d check(s) failed" % len(FAILED))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
