#!/usr/bin/env python3
"""check_export.py - `onnx-tl export` (clean inference export), one CTest entry per case.

usage: check_export.py ONNX_TL NODE ORT_DIR SRC WORKDIR CASE

For every exported model: exit 0; onnx.checker.check_model(full_check=True); graph input/output
names and opset_import equal to the input's; no Dropout; no BatchNormalization when folded (else
as many BN nodes as the input, each with one output and no training_mode); metadata: onnx_tl.frozen
and onnx_tl.head removed, every other key (labels, preprocess, provenance) kept verbatim; ONNX
Runtime (tests/ort/ort_run.js) on the export and `onnx-tl run` on the export both match
`onnx-tl run` of the INPUT model within 1e-5 relative (max |diff| / max |reference|) on random
inputs at batch 3.

Cases:
  resnet        testdata tiny_resnet (no BN/Dropout to remove: nodes kept as they are)
  mobilenet     testdata tiny_mobilenet, BN folded (default)
  mobilenet_bn  testdata tiny_mobilenet --no-fold-bn: inference BN kept
  fashion       testdata fashion_cnn (Conv+BN, labels and preprocessing in metadata) --fold-bn
  trained       tests/train/bn/model.onnx (BN with training outputs) -> swap-head --hidden 16
                --dropout 0.3 --labels -> freeze --all-but-head -> `onnx-tl train` 1 epoch on tiny
                data -> export: frozen/head gone, labels/provenance kept, no Dropout/BN left;
                also --no-fold-bn, and --no-fold-bn on the source model (BN training outputs)
  gemm_bn       a generated Gemm -> BatchNormalization -> Relu model (transB 0 and 1, shared
                weight): BN folded into the Gemm
  quant_fashion   --quantize int8 --calib (random .npz, --calib-samples): onnx.checker, every
                Conv/Gemm input through DequantizeLinear (int8 weights per output channel,
                uint8 activations), no float weight left, file <= 0.35x the float export, ORT
                (optimizations off and all) within 5% relative of the float export
                also with an image folder as calibration data (evaluated on those images), and
                --exclude '*Gemm*' (the head stays float)
  quant_mobilenet opset 12: weights per tensor; ORT within 10%
  quant_encoder   MatMul (weights, activation x activation) with int64 token ids as calibration
  quant_trained   tests/train/bn model trained 3 epochs by onnx-tl: int8 accuracy on held-out
                data within 5 points of the float export's (ORT)
  external      fashion_cnn with external data -> clean export keeps external data (OUT.data)
  keep          --keep re-serializes unchanged (same nodes, initializers and metadata)
  errors        bad flags (exit 2), -o naming the input (exit 2, input unchanged), unwritable or
                directory output (exit 1), unreadable model (exit 1), Dropout whose mask is used
                and BN whose running mean is a graph output (exit 1), quantize flags (exit 2), missing or
                mismatched calibration data, --exclude matching nothing (exit 1): nothing written
"""
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import otl_test  # noqa: E402
from otl_test import check, checker, meta, npy_name, random_feeds, run, tl  # noqa: E402

ONNX_TL, NODE, ORT_DIR, SRC, WORK, CASE = sys.argv[1:7]
otl_test.ONNX_TL = ONNX_TL
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(SRC)))
MODELS = os.path.join(ROOT, "testdata", "models")
BN_MODEL = os.path.join(ROOT, "tests", "train", "bn", "model.onnx")
ORT_RUN = os.path.join(ORT_DIR, "ort_run.js")
TRAINING_KEYS = ("onnx_tl.frozen", "onnx_tl.head")


def outputs_of(cmd_prefix, m, outdir, files):
    os.makedirs(outdir, exist_ok=True)
    args = list(cmd_prefix) + [outdir] if cmd_prefix[0] == NODE else list(cmd_prefix) + ["--outdir", outdir]
    for name, path in files:
        args += ["--input", "%s=%s" % (name, path)]
    if not run(args).returncode == 0:
        return None
    res = {}
    for o in m.graph.output:
        f = os.path.join(outdir, npy_name(o.name) + ".npy")
        res[o.name] = np.load(f) if os.path.exists(f) else None
    return res


def close(what, got, ref):
    ok = True
    for k, r in ref.items():
        g = got.get(k) if got else None
        if g is None or r is None or g.shape != r.shape:
            ok = check(False, "%s: output %s present with shape %s" % (what, k, None if r is None else r.shape)) and ok
            continue
        scale = max(float(np.abs(r).max()), 1e-12)
        err = float(np.abs(g.astype(np.float64) - r).max()) / scale
        ok = check(err <= 1e-5, "%s: output %s within 1e-5 relative (got %.3g)" % (what, k, err)) and ok
    return ok


def check_export(src, d, flags=(), folded=True):
    """Export src into d/out.onnx with flags and run every common check; returns the exported model."""
    os.makedirs(d, exist_ok=True)
    out = os.path.join(d, "out.onnx")
    if os.path.exists(out):
        os.remove(out)
    before = open(src, "rb").read()
    if tl("export", src, "-o", out, *flags).returncode != 0:
        return None
    check(open(src, "rb").read() == before, "input model unchanged")
    a, b = onnx.load(src), onnx.load(out)
    checker(out)
    check([i.name for i in b.graph.input] == [i.name for i in a.graph.input
                                              if i.name not in {t.name for t in a.graph.initializer}]
          or [i.name for i in b.graph.input] == [i.name for i in a.graph.input], "graph input names kept")
    check([o.name for o in b.graph.output] == [o.name for o in a.graph.output], "graph output names kept")
    check([(o.domain, o.version) for o in b.opset_import] == [(o.domain, o.version) for o in a.opset_import],
          "opset_import kept")
    ops_b = [n.op_type for n in b.graph.node]
    check("Dropout" not in ops_b, "no Dropout left")
    n_bn_a = sum(n.op_type == "BatchNormalization" for n in a.graph.node)
    bns = [n for n in b.graph.node if n.op_type == "BatchNormalization"]
    if folded:
        check(not bns, "no BatchNormalization left (folded %d)" % n_bn_a)
    else:
        check(len(bns) == n_bn_a, "BatchNormalization kept (%d of %d)" % (len(bns), n_bn_a))
        check(all(len(n.output) == 1 and not any(x.name == "training_mode" for x in n.attribute) for n in bns),
              "kept BN: one output, no training_mode")
    ma, mb = meta(a), meta(b)
    check(not any(k in mb for k in TRAINING_KEYS), "training metadata removed")
    check(mb == {k: v for k, v in ma.items() if k not in TRAINING_KEYS}, "other metadata kept verbatim")
    used = {i for n in b.graph.node for i in n.input}
    check(all(t.name in used for t in b.graph.initializer), "no unused initializer left")
    # numbers: onnx-tl run on the input is the reference
    files = random_feeds(a, d)
    ref = outputs_of([ONNX_TL, "run", src], a, os.path.join(d, "ref"), files)
    if ref is None:
        return b
    close("ORT on export", outputs_of([NODE, ORT_RUN, out], b, os.path.join(d, "ort"), files), ref)
    close("onnx-tl run on export", outputs_of([ONNX_TL, "run", out], b, os.path.join(d, "run"), files), ref)
    return b


def case_resnet(d):
    b = check_export(os.path.join(MODELS, "tiny_resnet.onnx"), d)
    a = onnx.load(os.path.join(MODELS, "tiny_resnet.onnx"))
    if b is not None:
        check([n.op_type for n in b.graph.node] == [n.op_type for n in a.graph.node], "nothing to remove: same nodes")


def case_mobilenet(d):
    check_export(os.path.join(MODELS, "tiny_mobilenet.onnx"), d)


def case_mobilenet_bn(d):
    check_export(os.path.join(MODELS, "tiny_mobilenet.onnx"), d, ["--no-fold-bn"], folded=False)


def case_fashion(d):
    check_export(os.path.join(MODELS, "fashion_cnn.onnx"), d, ["--fold-bn"])


def case_trained(d):
    r = np.random.RandomState(0)
    y = r.randint(0, 4, 48).astype(np.int64)
    x = (r.randn(48, 3, 10, 10) * 0.6 + y[:, None, None, None] * 0.4).astype(np.float32)
    np.savez(d + "/data.npz", x=x, y=y)
    with open(d + "/labels.txt", "w") as f:
        f.write("a\nb\nc\nd\n")
    tl("swap-head", BN_MODEL, "-o", d + "/head.onnx", "--classes", 4, "--hidden", 16, "--dropout", 0.3,
       "--seed", 1, "--labels", d + "/labels.txt")
    tl("freeze", d + "/head.onnx", "-o", d + "/frozen.onnx", "--all-but-head")
    tl("train", d + "/frozen.onnx", "--data", d + "/data.npz", "-o", d + "/trained.onnx", "--epochs", 1,
       "--batch", 16, "--threads", 1, "--val-split", 0, "--quiet")
    m = onnx.load(d + "/trained.onnx")
    keys = meta(m)
    check(all(k in keys for k in ("onnx_tl.frozen", "onnx_tl.head", "onnx_tl.labels", "onnx_tl.provenance")),
          "trained model has frozen/head/labels/provenance metadata (%s)" % sorted(keys))
    check(any(n.op_type == "Dropout" for n in m.graph.node), "trained model has a Dropout")
    check(any(n.op_type == "BatchNormalization" for n in m.graph.node), "trained model has BN")
    check_export(d + "/trained.onnx", d + "/fold")
    check_export(d + "/trained.onnx", d + "/keepbn", ["--no-fold-bn"], folded=False)
    # the untrained model as PyTorch exported it: BN with its three training outputs
    check(any(n.op_type == "BatchNormalization" and len(n.output) == 5 for n in onnx.load(BN_MODEL).graph.node),
          "source model has BN with training outputs")
    check_export(BN_MODEL, d + "/raw_keepbn", ["--no-fold-bn"], folded=False)


def case_gemm_bn(d):
    r = np.random.RandomState(3)
    f = lambda *s: r.randn(*s).astype(np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(f(6, 8), "w0"), numpy_helper.from_array(f(6), "b0"),
             numpy_helper.from_array(f(6, 5), "w1"),  # transB 0: (K, N)
             numpy_helper.from_array(f(5, 5), "w2")]  # shared by two Gemms
    for k in ("1", "2", "3"):
        c = 6 if k == "1" else 5
        inits += [numpy_helper.from_array(f(c) * 0.5 + 1, "g" + k), numpy_helper.from_array(f(c), "be" + k),
                  numpy_helper.from_array(f(c), "mu" + k), numpy_helper.from_array(np.abs(f(c)) + 0.5, "va" + k)]
    nodes = [helper.make_node("Gemm", ["x", "w0", "b0"], ["y0"], "gemm0", transB=1),
             helper.make_node("BatchNormalization", ["y0", "g1", "be1", "mu1", "va1"], ["z0"], "bn1", epsilon=1e-3),
             helper.make_node("Relu", ["z0"], ["r0"], "relu0"),
             helper.make_node("Gemm", ["r0", "w1"], ["y1"], "gemm1"),
             helper.make_node("BatchNormalization", ["y1", "g2", "be2", "mu2", "va2"], ["z1"], "bn2"),
             helper.make_node("Gemm", ["z1", "w2"], ["y2"], "gemm2", transB=1),
             helper.make_node("Gemm", ["z1", "w2"], ["y3"], "gemm3", transB=1),
             helper.make_node("BatchNormalization", ["y3", "g3", "be3", "mu3", "va3"], ["z3"], "bn3"),
             helper.make_node("Add", ["y2", "z3"], ["out"], "add")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(m, d + "/gemm_bn.onnx")
    b = check_export(d + "/gemm_bn.onnx", d + "/out")
    if b is not None:
        check(sorted(n.name for n in b.graph.node) == ["add", "gemm0", "gemm1", "gemm2", "gemm3", "relu0"],
              "Gemm nodes kept, BN folded into them")
        names = {t.name for t in b.graph.initializer}
        check("w2" in names and len(names) == 7, "shared weight kept for gemm2, a folded copy for gemm3 (%s)"
              % sorted(names))


def case_external(d):
    src = os.path.join(MODELS, "fashion_cnn.onnx")
    tl("export", src, "-o", d + "/ext.onnx", "--keep", "--external-data")
    check(os.path.isfile(d + "/ext.onnx.data"), "--keep --external-data wrote ext.onnx.data")
    b = check_export(d + "/ext.onnx", d + "/out")
    if b is not None:
        locs = {e.value for t in onnx.load(d + "/out/out.onnx", load_external_data=False).graph.initializer
                for e in t.external_data if e.key == "location"}
        check(locs == {"out.onnx.data"}, "clean export keeps external data (%s)" % sorted(locs))


def ort(model, outdir, feeds, opt="disabled"):
    args = [NODE, ORT_RUN, model, outdir, "--opt", opt]
    for name, path in feeds:
        args += ["--input", "%s=%s" % (name, path)]
    if run(args).returncode != 0:
        return None
    m = onnx.load(model, load_external_data=False)
    return [np.load(os.path.join(outdir, o.name + ".npy")) for o in m.graph.output]


def check_quant(src, d, calib, feeds, per_channel, max_rel, labels=None, max_ratio=None, flags=()):
    """--quantize int8: checker, QDQ structure, ORT (no and all optimizations) close to the float
    export; with labels, accuracy within 5 points of the float export's."""
    os.makedirs(d, exist_ok=True)
    fl, q = d + "/float.onnx", d + "/int8.onnx"
    tl("export", src, "-o", fl)
    if tl("export", src, "-o", q, "--quantize", "int8", "--calib", calib, *flags).returncode != 0:
        return
    checker(q)
    a, b = onnx.load(fl), onnx.load(q)
    check([i.name for i in b.graph.input] == [i.name for i in a.graph.input], "int8: graph input names kept")
    check([o.name for o in b.graph.output] == [o.name for o in a.graph.output], "int8: graph output names kept")
    check([(o.domain, o.version) for o in b.opset_import] == [(o.domain, o.version) for o in a.opset_import],
          "int8: opset_import kept")
    check(meta(a) == meta(b), "int8: metadata kept")
    inits = {t.name: t for t in b.graph.initializer}
    prod = {o: n for n in b.graph.node for o in n.output}
    targets = [n for n in b.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    n_float_targets = sum(n.op_type in ("Conv", "Gemm", "MatMul") for n in a.graph.node)
    check(len(targets) == n_float_targets and targets, "int8: %d Conv/Gemm/MatMul kept" % len(targets))
    ok_struct, ok_axis = True, True
    for n in targets:
        for k, x in enumerate(n.input[:1] if n.op_type == "Conv" else n.input[:2]):
            p = prod.get(x)
            if p is None or p.op_type != "DequantizeLinear":
                ok_struct = False
                print("  %s input %s is not dequantized" % (n.name, x))
                continue
            qt = inits.get(p.input[0])
            if qt is not None:  # a weight
                scale = numpy_helper.to_array(inits[p.input[1]])
                zp = numpy_helper.to_array(inits[p.input[2]])
                ok_struct &= qt.data_type == TensorProto.INT8 and not zp.any()
                if per_channel:
                    axis = [x.i for x in p.attribute if x.name == "axis"]
                    ok_axis &= bool(axis) and scale.shape == (qt.dims[axis[0]],)
                else:
                    ok_axis &= scale.shape == ()
            else:
                qn = prod.get(p.input[0])
                ok_struct &= qn is not None and qn.op_type == "QuantizeLinear" and \
                    inits[qn.input[2]].data_type == TensorProto.UINT8
    check(ok_struct, "int8: every Conv/Gemm/MatMul input comes through DequantizeLinear (int8 weights, "
          "uint8 activations)")
    check(ok_axis, "int8: weight scales %s" % ("per output channel" if per_channel else "per tensor"))
    check(not any(t.data_type == TensorProto.FLOAT and len(t.dims) >= 2 and t.name in
                  {n.input[1] for n in targets} for t in b.graph.initializer), "int8: no float weight left")
    if max_ratio:
        ratio = os.path.getsize(q) / os.path.getsize(fl)
        check(ratio <= max_ratio, "int8: file %.2fx the float export (<= %.2f)" % (ratio, max_ratio))
    ref = ort(fl, d + "/ort_float", feeds)
    for opt in ("disabled", "all"):
        got = ort(q, d + "/ort_int8_" + opt, feeds, opt)
        if ref is None or got is None:
            continue
        rel = float(np.abs(got[0] - ref[0]).max() / np.abs(ref[0]).max())
        check(rel <= max_rel, "int8 (ORT opt %s): first output within %.2g relative of float (got %.3g)"
              % (opt, max_rel, rel))
        if labels is not None:
            acc_f = float((ref[0].argmax(1) == labels).mean())
            acc_q = float((got[0].argmax(1) == labels).mean())
            check(abs(acc_f - acc_q) <= 0.05, "int8 (ORT opt %s): accuracy %.3f vs float %.3f" % (opt, acc_q, acc_f))


def npz_inputs(d, name, x):
    path = os.path.join(d, name + ".npy")
    np.save(path, x)
    return [(name, path)]


def case_quant_fashion(d):
    r = np.random.RandomState(11)
    np.savez(d + "/cal.npz", x=r.randn(48, 1, 28, 28).astype(np.float32), y=r.randint(0, 10, 48).astype(np.int64))
    feeds = npz_inputs(d, "input", r.randn(32, 1, 28, 28).astype(np.float32))
    check_quant(os.path.join(MODELS, "fashion_cnn.onnx"), d + "/q", d + "/cal.npz", feeds, True, 0.05,
                max_ratio=0.35, flags=["--calib-samples", 32, "--conv-min-k", 0])  # every Conv quantized
    # --exclude keeps the head in float
    src = os.path.join(MODELS, "fashion_cnn.onnx")
    tl("export", src, "-o", d + "/ex.onnx", "--quantize", "int8", "--calib", d + "/cal.npz", "--exclude", "*Gemm*",
       "--conv-min-k", 0)
    m = onnx.load(d + "/ex.onnx")
    prod = {o: n.op_type for n in m.graph.node for o in n.output}
    inits = {t.name: t for t in m.graph.initializer}
    gemm = [n for n in m.graph.node if n.op_type == "Gemm"]
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    # (its input may still come through the DequantizeLinear of the quantized Flatten before it)
    check(len(gemm) == 1 and all(x in inits and inits[x].data_type == TensorProto.FLOAT for x in gemm[0].input[1:])
          and prod.get(gemm[0].output[0]) is not None and "logits" == gemm[0].output[0],
          "--exclude: the Gemm stays float (float weight and bias, float output)")
    check(convs and all(prod.get(n.input[0]) == "DequantizeLinear" and prod.get(n.input[1]) == "DequantizeLinear"
                        for n in convs), "--exclude: the Convs are quantized")
    ref = ort(src, d + "/ex_f", feeds)
    got = ort(d + "/ex.onnx", d + "/ex_q", feeds)
    if ref and got:
        rel = float(np.abs(got[0] - ref[0]).max() / np.abs(ref[0]).max())
        check(rel <= 0.05, "--exclude: ORT within 5%% of float (got %.3g)" % rel)
    # an image folder as calibration data (the model's stored preprocessing)
    img = os.path.join(ROOT, "tests", "data", "img")
    os.makedirs(d + "/imgs/c0")
    for f in sorted(os.listdir(img)):
        if f.lower().endswith((".png", ".jpg")):
            shutil.copy(os.path.join(img, f), d + "/imgs/c0/" + f)
    # evaluated on the same images, preprocessed with PIL as the stored preprocessing says
    from PIL import Image
    xs = [(np.asarray(Image.open(d + "/imgs/c0/" + f).convert("L").resize((28, 28), Image.BILINEAR),
                      np.float32) / 255 - 0.5) / 0.5 for f in sorted(os.listdir(d + "/imgs/c0"))]
    feeds = npz_inputs(d, "input_img", np.stack(xs)[:, None].astype(np.float32))
    feeds = [("input", feeds[0][1])]
    check_quant(os.path.join(MODELS, "fashion_cnn.onnx"), d + "/qi", d + "/imgs", feeds, True, 0.05,
                flags=["--conv-min-k", 0])


def case_quant_mobilenet(d):
    # opset 12: weights per tensor
    r = np.random.RandomState(12)
    np.savez(d + "/cal.npz", x=r.randn(24, 3, 32, 32).astype(np.float32), y=r.randint(0, 10, 24).astype(np.int64))
    feeds = npz_inputs(d, "input", r.randn(8, 3, 32, 32).astype(np.float32))
    check_quant(os.path.join(MODELS, "tiny_mobilenet.onnx"), d + "/q", d + "/cal.npz", feeds, False, 0.1)


def case_quant_encoder(d):
    # MatMul (weights and activation x activation), int64 token ids as calibration data
    r = np.random.RandomState(13)
    np.savez(d + "/cal.npz", x=r.randint(0, 100, (24, 16)).astype(np.int64), y=np.zeros(24, np.int64))
    feeds = npz_inputs(d, "input_ids", r.randint(0, 100, (4, 16)).astype(np.int64))
    check_quant(os.path.join(MODELS, "tiny_encoder.onnx"), d + "/q", d + "/cal.npz", feeds, True, 0.05)


def case_quant_trained(d):
    # a model trained by onnx-tl on separable data: int8 accuracy stays within 5 points
    r = np.random.RandomState(0)
    y = r.randint(0, 4, 160).astype(np.int64)
    x = (r.randn(160, 3, 10, 10) * 0.6 + y[:, None, None, None] * 0.4).astype(np.float32)
    np.savez(d + "/data.npz", x=x[:96], y=y[:96])
    tl("train", BN_MODEL, "--data", d + "/data.npz", "-o", d + "/trained.onnx", "--epochs", 3, "--batch", 16,
       "--threads", 1, "--val-split", 0, "--quiet", "--lr", 0.01)
    feeds = npz_inputs(d, "input", x[96:])
    check_quant(d + "/trained.onnx", d + "/q", d + "/data.npz", feeds, True, 0.05, labels=y[96:])


def case_keep(d):
    src = os.path.join(MODELS, "fashion_cnn.onnx")
    tl("export", src, "-o", d + "/k.onnx", "--keep")
    a, b = onnx.load(src), onnx.load(d + "/k.onnx")
    def nodes(m):
        return [(n.name, n.op_type, n.domain, list(n.input), list(n.output), [str(x) for x in n.attribute])
                for n in m.graph.node]
    check(nodes(a) == nodes(b),
          "--keep: nodes unchanged")
    check([t.name for t in a.graph.initializer] == [t.name for t in b.graph.initializer], "--keep: initializers kept")
    check(meta(a) == meta(b), "--keep: metadata kept")


def case_errors(d):
    src = os.path.join(MODELS, "fashion_cnn.onnx")
    out = d + "/o.onnx"
    for flags in (["--bogus"], ["--fold-bn", "--no-fold-bn"], ["--keep", "--no-fold-bn"], ["--keep", "--fold-bn"],
                  ["--quantize", "int8"], ["--quantize", "int4", "--calib", src], ["--calib", src],
                  ["--calib-samples", "3"], ["--quantize", "int8", "--calib", src, "--calib-samples", "0"],
                  ["--quantize", "int8", "--calib", src, "--keep"], ["--exclude", "*"]):
        tl("export", src, "-o", out, *flags, expect=2)
    tl("export", src, expect=2)
    check(not os.path.exists(out), "usage errors write nothing")
    shutil.copy(src, d + "/in.onnx")
    before = open(d + "/in.onnx", "rb").read()
    tl("export", d + "/in.onnx", "-o", d + "/in.onnx", expect=2)
    os.makedirs(d + "/sub", exist_ok=True)
    tl("export", d + "/in.onnx", "-o", d + "/sub/../in.onnx", expect=2)
    check(open(d + "/in.onnx", "rb").read() == before, "-o naming the input: input unchanged")
    tl("export", src, "-o", d + "/missing_dir/o.onnx", expect=1)
    check(not os.path.exists(d + "/missing_dir"), "unwritable output: nothing written")
    tl("export", src, "-o", d + "/sub", expect=1)
    check(os.listdir(d + "/sub") == [], "directory output: nothing written inside")
    with open(d + "/bad.onnx", "wb") as f:
        f.write(b"\x08\x07\x12garbage")
    tl("export", d + "/bad.onnx", "-o", out, expect=1)
    tl("export", d + "/nope.onnx", "-o", out, expect=1)
    tl("export", src, "-o", out, "--quantize", "int8", "--calib", d + "/nope.npz", expect=1)
    np.savez(d + "/cal.npz", x=np.zeros((4, 1, 28, 28), np.float32), y=np.zeros(4, np.int64))
    p = tl("export", src, "-o", out, "--quantize", "int8", "--calib", d + "/cal.npz", "--exclude", "*Conv*,nomatch*",
           expect=1)
    check("nomatch*" in p.stderr, "--exclude glob matching nothing is named: " + p.stderr.strip())
    np.savez(d + "/wrong.npz", x=np.zeros((4, 3, 5, 5), np.float32), y=np.zeros(4, np.int64))
    tl("export", src, "-o", out, "--quantize", "int8", "--calib", d + "/wrong.npz", expect=1)
    # a Dropout whose mask is a graph output; a BN whose running mean is one
    nodes = [helper.make_node("Dropout", ["x"], ["y", "mask"], "drop")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
                           helper.make_tensor_value_info("mask", TensorProto.BOOL, [2, 3])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), d + "/mask.onnx")
    p = tl("export", d + "/mask.onnx", "-o", out, expect=1)
    check("drop" in p.stderr and "mask" in p.stderr and p.stderr.startswith("onnx-tl: "),
          "mask error names node and tensor: " + p.stderr.strip())
    c = [numpy_helper.from_array(np.ones(3, np.float32), n) for n in ("s", "b", "m", "v")]
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], "bn",
                              training_mode=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
                           helper.make_tensor_value_info("rm", TensorProto.FLOAT, [3])], c)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)]), d + "/bnout.onnx")
    p = tl("export", d + "/bnout.onnx", "-o", out, expect=1)
    check("'bn'" in p.stderr and "rm" in p.stderr, "BN error names node and tensor: " + p.stderr.strip())
    check(not os.path.exists(out), "failed exports write nothing")
    check(not [f for f in os.listdir(d) if f.startswith(".") or "tmp" in f], "no temporary files left")


if __name__ == "__main__":
    if not os.path.exists(os.path.join(ORT_DIR, "node_modules", "onnxruntime-node")):
        check(False, "onnxruntime-node installed in %s (run `npm ci` there)" % ORT_DIR)
    sys.exit(otl_test.main(CASE, globals(), work=WORK))
