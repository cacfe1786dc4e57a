#!/usr/bin/python3
"""onnx-tl runs quantized models (issue 6): one case per invocation.

usage: check_qexec.py ONNX_TL NODE ORT_DIR WORKDIR CASE [--fashion-dir DIR]

Cases
  fashion   testdata/models/fashion_cnn.onnx (trained on Fashion-MNIST classes 0-4) exported with
            `export --quantize int8 --calib` (256 training images of those classes), then run on
            1000 test images of those classes:
              - `onnx-tl run` vs ONNX Runtime without optimizations (ORT dequantizes too): max abs
                difference <= 1 step of the logits' scale (see below) and mean abs <= 1e-5 of the
                largest logit (float rounding, plus the rare value that lands on the other side of
                a rounding boundary of a QuantizeLinear);
              - `onnx-tl run` vs ONNX Runtime with all optimizations (ORT fuses the QDQ pairs into
                integer kernels whose rounding differs): argmax agreement >= 99%, max abs difference
                <= 2 steps of the logits' scale (the largest |logit| / 127, as if the logits were
                quantized symmetrically to int8);
              - `onnx-tl eval` on the int8 model: accuracy within 0.5 points of ORT's (optimized)
                accuracy on the same images, and within 1.0 point of the float model's;
              - `onnx-tl predict` on PNG files gives the label ORT gives on the same pixels.
  dynamic   testdata/models/tiny_encoder.onnx (MatMul/Gemm transformer encoder, opset 17) exported
            with `export --quantize int8-dynamic`: onnx.checker passes; every MatMul/Gemm with a
            float weight became DynamicQuantizeLinear -> MatMulInteger (int8 weight initializer) ->
            Cast -> Mul (-> Add); no float weight left; the file is smaller than the float export;
            ONNX Runtime and onnx-tl run it; both within 5% (max abs / max |float output|) of the
            float model, and onnx-tl within 1e-4 of ORT without optimizations (both compute the
            same integer products; differences come from float rounding only); MatMulInteger on
            oneDNN and on the C kernel (OTL_NO_DNNL_QMM=1) give identical outputs.
  dynamic_errors  --quantize int8-dynamic with --calib (exit 2) and on a model without a MatMul/Gemm
            weight (exit 1, nothing written).
"""
import gzip
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import onnx

ONNX_TL, NODE, ORT_DIR, WORK, CASE = sys.argv[1:6]
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
if "--fashion-dir" in sys.argv:
    FASHION_DIR = sys.argv[sys.argv.index("--fashion-dir") + 1]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "testdata", "models")
ORT_RUN = os.path.join(ORT_DIR, "ort_run.js")
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
    check(p.returncode == expect, "exit %d (expected %d): %s" % (p.returncode, expect,
                                                                 " ".join(map(str, args[1:]))[:200]))
    return p


def tl(*args, expect=0):
    return run([ONNX_TL, *args], expect=expect)


def outputs(model, outdir, feeds, ort_opt=None):
    """First output of `onnx-tl run` (ort_opt None) or of ONNX Runtime at that optimization level."""
    os.makedirs(outdir, exist_ok=True)
    if ort_opt is None:
        args = [ONNX_TL, "run", model, "--outdir", outdir]
    else:
        args = [NODE, ORT_RUN, model, outdir, "--opt", ort_opt]
    for name, path in feeds:
        args += ["--input", "%s=%s" % (name, path)]
    if run(args).returncode != 0:
        return None
    name = onnx.load(model, load_external_data=False).graph.output[0].name
    return np.load(os.path.join(outdir, "".join(c if c.isalnum() or c in "._-" else "_" for c in name) + ".npy"))


def idx(name):
    with gzip.open(os.path.join(FASHION_DIR, name)) as f:
        data = f.read()
    if name.find("labels") >= 0:
        return np.frombuffer(data, np.uint8, offset=8).astype(np.int64)
    return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)


def fashion_subset(split, n):
    """The first n images of classes 0-4, preprocessed as the model's metadata says."""
    x, y = idx("%s-images-idx3-ubyte.gz" % split), idx("%s-labels-idx1-ubyte.gz" % split)
    keep = np.nonzero(y < 5)[0][:n]
    return x[keep], y[keep]


def normalize(raw):
    return ((raw.astype(np.float32) / 255 - 0.5) / 0.5)[:, None].astype(np.float32)


def case_fashion(d):
    src = os.path.join(MODELS, "fashion_cnn.onnx")
    xc, yc = fashion_subset("train", 256)
    np.savez(d + "/calib.npz", x=normalize(xc), y=yc)
    xt_raw, yt = fashion_subset("t10k", 1000)
    xt = normalize(xt_raw)
    np.savez(d + "/test.npz", x=xt, y=yt)
    np.save(d + "/x.npy", xt)
    feeds = [("input", d + "/x.npy")]
    fl, q = d + "/float.onnx", d + "/int8.onnx"
    tl("export", src, "-o", fl)
    if tl("export", src, "-o", q, "--quantize", "int8", "--calib", d + "/calib.npz").returncode != 0:
        return
    ops = {n.op_type for n in onnx.load(q).graph.node}
    check({"QuantizeLinear", "DequantizeLinear"} <= ops, "the int8 export is a QDQ model")
    got = outputs(q, d + "/tl", feeds)
    ort_plain = outputs(q, d + "/ort_plain", feeds, "disabled")
    ort_int = outputs(q, d + "/ort_all", feeds, "all")
    ref_float = outputs(fl, d + "/ort_float", feeds, "disabled")
    if got is None or ort_plain is None or ort_int is None or ref_float is None:
        return
    big = float(np.abs(ort_int).max())
    step = big / 127
    err_plain = float(np.abs(got - ort_plain).max())
    mean_plain = float(np.abs(got - ort_plain).mean())
    check(err_plain <= step, "run vs ORT (no optimizations, dequantizing): max abs %.3g <= 1 step (%.3g)"
          % (err_plain, step))
    check(mean_plain <= 1e-5 * big, "run vs ORT (no optimizations): mean abs %.3g <= %.3g (rare rounding flips)"
          % (mean_plain, 1e-5 * big))
    err_int = float(np.abs(got - ort_int).max())
    agree = float((got.argmax(1) == ort_int.argmax(1)).mean())
    check(agree >= 0.99, "run vs ORT (all optimizations, integer kernels): argmax agreement %.4f >= 0.99" % agree)
    check(err_int <= 2 * step, "run vs ORT (all optimizations): max abs %.3g <= 2 steps (%.3g; step = max|logit|/127)"
          % (err_int, 2 * step))
    print("     mean abs vs ORT integer kernels %.3g, vs float model %.3g (largest logit %.3g)"
          % (float(np.abs(got - ort_int).mean()), float(np.abs(got - ref_float).mean()), big))
    # eval: accuracy as ORT's on the same images
    p = tl("eval", q, "--data", d + "/test.npz", "--json")
    if p.returncode == 0:
        acc = json.loads(p.stdout)["accuracy"]
        acc_ort = float((ort_int.argmax(1) == yt).mean())
        acc_float = float((ref_float.argmax(1) == yt).mean())
        check(abs(acc - acc_ort) <= 0.005, "eval int8: accuracy %.4f vs ORT %.4f (within 0.5 points)" % (acc, acc_ort))
        check(abs(acc - acc_float) <= 0.01, "eval int8: accuracy %.4f vs float %.4f (within 1.0 point)"
              % (acc, acc_float))
    # predict on PNG files (the model's stored preprocessing) vs ORT on the same pixels
    from PIL import Image
    os.makedirs(d + "/png")
    files = []
    for i in range(6):
        f = d + "/png/%d.png" % i
        Image.fromarray(xt_raw[i]).save(f)
        files.append(f)
    p = tl("predict", q, *files, "--json")
    ort_top = ort_int.argmax(1)[:6]
    if p.returncode == 0:
        res = json.loads(p.stdout)
        items = res if isinstance(res, list) else res.get("predictions", res.get("results", []))
        labels = [l.strip() for l in dict((e.key, e.value) for e in onnx.load(q).metadata_props)
                  ["onnx_tl.labels"].strip().split("\n")]
        got_top = [it["top"][0]["label"] if "top" in it else it["label"] for it in items]
        check(got_top == [labels[i] for i in ort_top], "predict int8 on PNGs: %s (ORT %s)"
              % (got_top, [labels[i] for i in ort_top]))


def check_dynamic(src, d, feeds, max_rel, max_ratio=None, flags=()):
    """--quantize int8-dynamic: checker, structure, ORT and onnx-tl close to the float model."""
    os.makedirs(d, exist_ok=True)
    fl, q = d + "/float.onnx", d + "/dyn.onnx"
    tl("export", src, "-o", fl)
    if tl("export", src, "-o", q, "--quantize", "int8-dynamic", *flags).returncode != 0:
        return None
    ratio = os.path.getsize(q) / os.path.getsize(fl)  # before the checker: given a path, onnx 1.12's
    size = (os.path.getsize(fl), os.path.getsize(q))  # full_check writes inferred value_info into the file
    try:
        onnx.checker.check_model(q, full_check=True)
        check(True, "int8-dynamic: onnx.checker full_check")
    except Exception as e:  # noqa: BLE001
        check(False, "int8-dynamic: onnx.checker full_check: %s" % e)
    a, b = onnx.load(fl), onnx.load(q)
    check([i.name for i in b.graph.input] == [i.name for i in a.graph.input] and
          [o.name for o in b.graph.output] == [o.name for o in a.graph.output], "int8-dynamic: graph input/output names kept")
    inits = {t.name: t for t in b.graph.initializer}
    prod = {o: n for n in b.graph.node for o in n.output}
    mmi = [n for n in b.graph.node if n.op_type == "MatMulInteger"]
    ok = bool(mmi)
    for n in mmi:
        w = inits.get(n.input[1])
        p = prod.get(n.input[0])
        ok &= w is not None and w.data_type == onnx.TensorProto.INT8 and p is not None and \
            p.op_type == "DynamicQuantizeLinear" and n.input[2] == p.output[2]
    check(ok, "int8-dynamic: %d MatMulInteger, each with an int8 weight initializer and a DynamicQuantizeLinear input"
          % len(mmi))
    float_w = [n.name for n in b.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and
               n.input[1] in inits and inits[n.input[1]].data_type == onnx.TensorProto.FLOAT]
    if "--exclude" not in flags:
        check(not float_w, "int8-dynamic: no MatMul/Gemm with a float weight left (%s)" % float_w)
    print("     file %d -> %d bytes (%.2fx)" % (size[0], size[1], ratio))
    if max_ratio:
        check(ratio <= max_ratio, "int8-dynamic: file %.2fx the float export (<= %.2f)" % (ratio, max_ratio))
    ref = outputs(fl, d + "/ort_float", feeds, "disabled")
    got = outputs(q, d + "/tl_dyn", feeds)
    ort_plain = outputs(q, d + "/ort_dyn", feeds, "disabled")
    ort_all = outputs(q, d + "/ort_dyn_all", feeds, "all")
    if ref is None or got is None or ort_plain is None or ort_all is None:
        return None
    big = float(np.abs(ref).max())
    for what, o in (("onnx-tl", got), ("ORT", ort_plain), ("ORT (all optimizations)", ort_all)):
        rel = float(np.abs(o - ref).max()) / big
        check(rel <= max_rel, "int8-dynamic: %s within %.2g of the float model (max abs / max |y|: %.3g)"
              % (what, max_rel, rel))
    rel = float(np.abs(got - ort_plain).max()) / big
    check(rel <= 1e-4, "int8-dynamic: onnx-tl vs ORT (no optimizations) %.3g <= 1e-4" % rel)
    # MatMulInteger on oneDNN (the default for these weights) and on the C kernel: same integers
    ck, _ = run_env({"OTL_NO_DNNL_QMM": "1"}, q, d + "/tl_dyn_c", feeds)
    check(ck is not None and np.array_equal(ck, got), "int8-dynamic: oneDNN and C MatMulInteger give identical outputs")
    _, log = run_env({"ONEDNN_VERBOSE": "1"}, q, d + "/tl_dyn_v", feeds)
    check(any("matmul" in l and "src_u8" in l and "wei_s8" in l for l in log.splitlines()),
          "int8-dynamic: MatMulInteger ran as a oneDNN u8 x s8 matmul")
    return b


def case_dynamic(d):
    # the transformer encoder (MatMul weights and Gemm), int64 token ids
    r = np.random.RandomState(5)
    np.save(d + "/ids.npy", r.randint(0, 100, (4, 16)).astype(np.int64))
    check_dynamic(os.path.join(MODELS, "tiny_encoder.onnx"), d + "/enc", [("input_ids", d + "/ids.npy")], 0.05,
                  max_ratio=0.8)
    # Gemm with alpha, beta, transB and a bias; two MatMuls sharing an activation (one
    # DynamicQuantizeLinear), a batched (3-D) activation, and a MatMul of two activations (stays float)
    from onnx import TensorProto, helper, numpy_helper
    w1 = r.randn(16, 24).astype(np.float32)
    w2 = r.randn(16, 8).astype(np.float32)
    wg = r.randn(6, 24).astype(np.float32)
    cg = r.randn(6).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
             helper.make_node("MatMul", ["x", "w2"], ["h2"], name="mm2"),
             helper.make_node("Relu", ["h1"], ["r1"], name="relu"),
             helper.make_node("Reshape", ["r1", "shape"], ["flat"], name="flat"),
             helper.make_node("Gemm", ["flat", "wg", "cg"], ["y"], name="gemm", alpha=0.5, beta=2.0, transB=1),
             helper.make_node("Transpose", ["h2"], ["h2t"], name="tr", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["h2", "h2t"], ["z"], name="act_act")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [10, 6]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 5, 5])],
                          [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
                           numpy_helper.from_array(wg, "wg"), numpy_helper.from_array(cg, "cg"),
                           numpy_helper.from_array(np.array([10, 24], np.int64), "shape")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), d + "/mix.onnx")
    np.save(d + "/x.npy", r.randn(2, 5, 16).astype(np.float32))
    b = check_dynamic(d + "/mix.onnx", d + "/mix", [("x", d + "/x.npy")], 0.05)
    if b is not None:
        ops = [n.op_type for n in b.graph.node]
        check(ops.count("DynamicQuantizeLinear") == 2 and ops.count("MatMulInteger") == 3 and ops.count("MatMul") == 1,
              "int8-dynamic: x quantized once for mm1 and mm2, the Gemm's input once; activation x activation "
              "MatMul stays float (%s)" % ops)
    # --exclude keeps a node in float
    b = check_dynamic(d + "/mix.onnx", d + "/ex", [("x", d + "/x.npy")], 0.05, flags=["--exclude", "gemm"])
    if b is not None:
        ops = [n.op_type for n in b.graph.node]
        check("Gemm" in ops and ops.count("MatMulInteger") == 2, "int8-dynamic --exclude gemm: the Gemm stays float")


def case_dynamic_errors(d):
    src = os.path.join(MODELS, "tiny_encoder.onnx")
    out = d + "/out.onnx"
    tl("export", src, "-o", out, "--quantize", "int8-dynamic", "--calib", src, expect=2)
    tl("export", src, "-o", out, "--quantize", "int8-dynamic", "--calib-samples", "3", expect=2)
    p = tl("export", src, "-o", out, "--quantize", "int8-dynamic", "--exclude", "nomatch*", expect=1)
    check("nomatch*" in p.stderr, "--exclude matching nothing is named: " + p.stderr.strip())
    # no MatMul/Gemm with a weight: an input error
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), d + "/relu.onnx")
    p = tl("export", d + "/relu.onnx", "-o", out, "--quantize", "int8-dynamic", expect=1)
    check(p.stderr.startswith("onnx-tl: ") and "MatMul" in p.stderr, "no target: one-line error: " + p.stderr.strip())
    # opset 10 has no DynamicQuantizeLinear
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [0.1] * 6)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 10)]), d + "/old.onnx")
    p = tl("export", d + "/old.onnx", "-o", out, "--quantize", "int8-dynamic", expect=1)
    check("opset" in p.stderr, "opset 10: refused: " + p.stderr.strip())
    check(not os.path.exists(out), "failed exports write nothing")


def run_env(env, model, outdir, feeds):
    """`onnx-tl run` with extra environment variables; (first output, stderr)."""
    os.makedirs(outdir, exist_ok=True)
    args = [ONNX_TL, "run", model, "--outdir", outdir]
    for name, path in feeds:
        args += ["--input", "%s=%s" % (name, path)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=900, env=dict(os.environ, **env))
    check(p.returncode == 0, "run %s (%s)" % (os.path.basename(model), env))
    if p.returncode != 0:
        print(p.stderr[-2000:])
        return None, p.stderr
    name = onnx.load(model, load_external_data=False).graph.output[0].name
    p.stderr = p.stdout + p.stderr  # oneDNN's verbose lines go to stdout
    return np.load(os.path.join(outdir, "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
                                + ".npy")), p.stderr


def qconv_parity(what, model, d, feeds, tol, mean_tol=None, want_fused=True, ref=True, step=None):
    """The fused int8 convolution (onnx_tl.QDQConv) against the dequantize path (OTL_NO_QCONV=1) and
    ONNX Runtime without optimizations: max abs difference <= tol * max |y| (mean <= mean_tol)."""
    fused, err = run_env({"OTL_PROFILE": "1"}, model, d + "/fused", feeds)
    plain, err2 = run_env({"OTL_NO_QCONV": "1", "OTL_PROFILE": "1"}, model, d + "/plain", feeds)
    ort = outputs(model, d + "/ort", feeds, "disabled")
    if fused is None or plain is None or ort is None:
        return
    check(("QDQConv" in err) == want_fused and "QDQConv" not in err2,
          "%s: QDQConv %s (and not with OTL_NO_QCONV=1)" % (what, "used" if want_fused else "not used"))
    big = max(float(np.abs(plain).max()), 1e-6)
    if step is not None:  # quantized outputs: at most one step apart, rarely
        for other, on in ((plain, "dequantize path"), (ort, "ORT")):
            diff = np.abs(fused - other)
            check(float(diff.max()) <= step * 1.001 and float((diff > step / 2).mean()) <= 0.01,
                  "%s: fused vs %s: max %.3g (<= one step %.3g), %.2f%% of values a step apart" % (
                      what, on, float(diff.max()), step, 100 * float((diff > step / 2).mean())))
        tol = step * 1.001 / big
    e1 = float(np.abs(fused - plain).max()) / big
    e2 = float(np.abs(fused - ort).max()) / big
    check(e1 <= tol, "%s: fused vs dequantize path %.3g <= %.3g (relative to max |y|)" % (what, e1, tol))
    check(e2 <= tol, "%s: fused vs ORT %.3g <= %.3g" % (what, e2, tol))
    if mean_tol is not None:
        m1 = float(np.abs(fused - plain).mean()) / big
        check(m1 <= mean_tol, "%s: mean abs difference to the dequantize path %.3g <= %.3g" % (what, m1, mean_tol))
    if fused.ndim == 2:
        agree = float((fused.argmax(1) == plain.argmax(1)).mean())
        check(agree >= 0.999, "%s: argmax agreement with the dequantize path %.4f" % (what, agree))
    if not ref:
        return
    # the fallback for int8 convolutions oneDNN refuses (ops/conv_int8.c qc_ref), forced: still QDQConv,
    # no oneDNN convolution executed, the same values as the dequantize path
    refd, err3 = run_env({"OTL_QCONV_REF": "1", "OTL_PROFILE": "1", "ONEDNN_VERBOSE": "1"}, model, d + "/ref", feeds)
    _, err4 = run_env({"OTL_PROFILE": "1", "ONEDNN_VERBOSE": "1"}, model, d + "/fused_v", feeds)
    if refd is None:
        return
    conv_lines = lambda e: [ln for ln in e.splitlines() if ln.startswith("onednn_verbose,exec") and "convolution" in ln]
    check("QDQConv" in err3 and not conv_lines(err3) and conv_lines(err4),
          "%s: OTL_QCONV_REF=1 runs QDQConv without a oneDNN convolution (%d exec lines; %d without it)"
          % (what, len(conv_lines(err3)), len(conv_lines(err4))))
    e3 = float(np.abs(refd - plain).max()) / big
    check(e3 <= tol, "%s: fallback vs dequantize path %.3g <= %.3g" % (what, e3, tol))


def qdq_conv_model(path, xdt, zp, group, strides, dil, pads, per_channel, bias, relu, opset=13, qout=None):
    from onnx import TensorProto, helper, numpy_helper
    r = np.random.RandomState(len(path))
    c, m, k = 4, 6, 3
    w = r.randint(-127, 128, (m, c // group, k, k)).astype(np.int8)
    ws = (r.rand(m) * 0.02 + 0.005).astype(np.float32) if per_channel else np.array(0.01, np.float32)
    xt = TensorProto.UINT8 if xdt == "u8" else TensorProto.INT8
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
             numpy_helper.from_array(np.array(zp, np.uint8 if xdt == "u8" else np.int8), "xz"),
             numpy_helper.from_array(w, "wq"), numpy_helper.from_array(ws, "ws"),
             numpy_helper.from_array(np.zeros(ws.shape, np.int8), "wz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], **({"axis": 0} if per_channel else {}))]
    cin = ["xd", "wd"]
    if bias:
        inits.append(numpy_helper.from_array(r.randn(m).astype(np.float32), "b"))
        cin.append("b")
    nodes.append(helper.make_node("Conv", cin, ["cy"], group=group, strides=strides, dilations=dil, pads=pads,
                                  kernel_shape=[k, k]))
    if qout is None:
        nodes.append(helper.make_node("Relu" if relu else "Identity", ["cy"], ["y"]))
    else:  # a QuantizeLinear after the convolution, which graph/fuse.c absorbs into QDQConv
        ydt, yzp = qout
        if relu:
            nodes.append(helper.make_node("Relu", ["cy"], ["y0"]))
        else:
            nodes[-1].output[0] = "y0"
        inits += [numpy_helper.from_array(np.array(0.03, np.float32), "ys"),
                  numpy_helper.from_array(np.array(yzp, np.uint8 if ydt == "u8" else np.int8), "yz")]
        nodes.append(helper.make_node("QuantizeLinear", ["y0", "ys", "yz"], ["yq"]))
        nodes.append(helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, c, 11, 10])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), path)


def case_qconv(d):
    r = np.random.RandomState(9)
    np.save(d + "/x.npy", (r.randn(2, 4, 11, 10) * 2).astype(np.float32))
    feeds = [("x", d + "/x.npy")]
    variants = [("u8_zp128_pad_relu", "u8", 128, 1, [1, 1], [1, 1], [1, 1, 1, 1], True, True, True),
                ("u8_zp0_stride_dil_asym", "u8", 0, 1, [2, 1], [2, 1], [0, 2, 1, 0], True, True, False),
                ("s8_zp-7_group_tensor", "s8", -7, 2, [1, 2], [1, 1], [2, 1, 0, 1], False, False, True),
                ("u8_zp37_group_nobias", "u8", 37, 2, [1, 1], [1, 1], [1, 1, 1, 1], True, False, False)]
    for name, *args in variants:
        path = "%s/%s.onnx" % (d, name)
        qdq_conv_model(path, *args)
        qconv_parity(name, path, d + "/" + name, feeds, 1e-5)
    # with a QuantizeLinear after it: QDQConv writes uint8/int8 itself (oneDNN output scales / y_scale and
    # a destination zero point); a value on a rounding boundary may land one step (0.03) the other way
    for name, qout, args in (("q_u8_zp10_relu", ("u8", 10), variants[0][1:]),
                             ("q_s8_zp-5", ("s8", -5), variants[1][1:]),
                             ("q_u8_zp200_s8in_group", ("u8", 200), variants[2][1:])):
        path = "%s/%s.onnx" % (d, name)
        qdq_conv_model(path, *args, qout=qout)
        qconv_parity(name, path, d + "/" + name, feeds, 1e-5, step=0.03)
        _, e1 = run_env({"OTL_PROFILE": "1"}, path, d + "/" + name + "/p1", feeds)
        _, e2 = run_env({"OTL_PROFILE": "1", "OTL_NO_QCONV_Q": "1"}, path, d + "/" + name + "/p2", feeds)
        nq = lambda e: sum(int(m) for m in re.findall(r"profile: QuantizeLinear .* (\d+) calls", e))
        check(nq(e1) == 1 and nq(e2) == 2, "%s: the QuantizeLinear after the convolution absorbed (%d QuantizeLinear "
              "runs; %d with OTL_NO_QCONV_Q=1)" % (name, nq(e1), nq(e2)))
    # whole models: the demo model's int8 export (u8, per channel, Relu) and an opset-12 mobilenet
    # (per-tensor weights, depthwise groups); a QuantizeLinear after the convolutions may round a
    # value the other way (one step), hence the wider tolerance on the maximum, and a mean that
    # shows such values are rare
    xc, yc = fashion_subset("train", 64)
    np.savez(d + "/calib.npz", x=normalize(xc), y=yc)
    xt, _ = fashion_subset("t10k", 500)
    np.save(d + "/fx.npy", normalize(xt))
    tl("export", os.path.join(MODELS, "fashion_cnn.onnx"), "-o", d + "/fashion_int8.onnx", "--quantize", "int8",
       "--calib", d + "/calib.npz")
    qconv_parity("fashion_cnn int8", d + "/fashion_int8.onnx", d + "/fashion", [("input", d + "/fx.npy")], 5e-3, 1e-4,
                 ref=False)
    np.savez(d + "/mcal.npz", x=r.randn(16, 3, 32, 32).astype(np.float32), y=np.zeros(16, np.int64))
    np.save(d + "/mx.npy", r.randn(8, 3, 32, 32).astype(np.float32))
    tl("export", os.path.join(MODELS, "tiny_mobilenet.onnx"), "-o", d + "/mobilenet_int8.onnx", "--quantize", "int8",
       "--calib", d + "/mcal.npz")
    qconv_parity("tiny_mobilenet int8 (opset 12)", d + "/mobilenet_int8.onnx", d + "/mobilenet",
                 [("input", d + "/mx.npy")], 5e-3, 1e-4)


def main():
    fn = globals().get("case_" + CASE)
    if not fn:
        sys.stderr.write("check_qexec.py: unknown case %s\n" % CASE)
        return 2
    if not os.path.exists(os.path.join(ORT_DIR, "node_modules", "onnxruntime-node")):
        check(False, "onnxruntime-node installed in %s (run `npm ci` there)" % ORT_DIR)
    d = os.path.join(WORK, CASE)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    fn(d)
    if FAILED:
        print("%s: %d check(s) failed" % (CASE, len(FAILED)))
        return 1
    print("%s: OK" % CASE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
