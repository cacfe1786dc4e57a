#!/usr/bin/env python3
"""check_prune.py - `onnx-tl export --prune / --prune-channels`, one CTest entry per case.

usage: check_prune.py ONNX_TL NODE ORT_DIR WORKDIR CASE [--fashion-folder BIN] [--data-dir DIR]

Every pruned model passes onnx.checker.check_model(full_check=True) and runs in ONNX Runtime
(tests/ort/ort_run.js), where it matches `onnx-tl run` of the same model within 1e-4 relative.

Cases:
  sparsity   --prune 0.5 / 0.9 on fashion_cnn, tiny_resnet, tiny_mobilenet (opset 12), tiny_encoder
             (MatMul): the zeros are exactly the round(s * N) smallest |w| over all Conv/Gemm/MatMul
             weights (numpy stable argsort on the --no-fold-bn clean export, ties in node order),
             everything else bit-identical; onnx_tl.pruned lists exactly those tensors; with BN
             folded (default) the same positions are zero; --exclude keeps a node's weight dense
             and the sparsity is exact over the rest; stderr reports the sparsity.
  train      masks survive `train`: fashion_cnn --prune 0.5, then 2 epochs (Adam; SGD with
             momentum and weight decay; AdamW): every pruned weight is still exactly 0 and the
             others moved; --checkpoint + --resume (2 epochs, then --resume --epochs 3) keeps the
             zeros and equals an uninterrupted 3-epoch run bit for bit; the final `export` keeps the
             zeros and drops onnx_tl.pruned (checker, ORT).
  channels   --prune-channels 0.3 on tiny_resnet, fashion_cnn (BN, GAP -> Flatten -> Gemm; folded
             and --no-fold-bn; --channel-multiple 1 and the default 8), tiny_mobilenet (BN, Clip,
             depthwise): parameter count and file smaller than the clean export; per pruned Conv,
             round(0.3 * C) channels removed (kept count rounded to a multiple of 8 by default), those
             of smallest L1 norm (recomputed in numpy); ONNX Runtime on the pruned model equals ONNX
             Runtime on the clean export with those channels' weights, bias and BN scale/shift
             zeroed (1e-4 relative): the rewiring is right; convs feeding an Add stay whole.
  accuracy   the demo task (Fashion-MNIST classes 5-9, fashion_folder; 50 training / 100
             validation / 200 test images per class): a float model fine-tuned from fashion_cnn,
             pruned to 50% and fine-tuned 2 epochs, loses at most 1.5 points of test accuracy
             against the float model and against the float model fine-tuned the same 2 epochs.
  errors     bad --prune/--prune-channels values, --keep or --quantize with pruning, --exclude
             alone (exit 2); --exclude matching nothing, no weight to prune, a NaN weight, an
             unreadable model (exit 1); nothing written, input unchanged.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import otl_test  # noqa: E402
from otl_test import check, checker, inits, meta, npy_name, random_feeds, run, tl  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("onnx_tl")
ap.add_argument("node")
ap.add_argument("ort_dir")
ap.add_argument("work")
ap.add_argument("case")
ap.add_argument("--fashion-folder")
ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
A = ap.parse_args()
ONNX_TL, NODE, WORK, CASE = A.onnx_tl, A.node, A.work, A.case
otl_test.ONNX_TL = ONNX_TL
ORT_RUN = os.path.join(A.ort_dir, "ort_run.js")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "testdata", "models")


def weight_names(m, exclude=()):
    """Unique weight initializers of Conv/Gemm/MatMul in node order (as graph/prune.c picks them)."""
    init = inits(m)
    names = []
    for n in m.graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul") or len(n.input) < 2 or n.input[1] not in init:
            continue
        w = init[n.input[1]]
        if w.dtype != np.float32 or (w.ndim < 3 if n.op_type == "Conv" else w.ndim != 2):
            continue
        if n.input[1] not in names:
            names.append(n.input[1])
    ex = {n.input[1] for n in m.graph.node if n.name in exclude and len(n.input) > 1}
    return [w for w in names if w not in ex]


def outputs(engine, model, outdir, files):
    os.makedirs(outdir, exist_ok=True)
    args = [NODE, ORT_RUN, model, outdir] if engine == "ort" else [ONNX_TL, "run", model, "--outdir", outdir]
    for name, path in files:
        args += ["--input", "%s=%s" % (name, path)]
    if run(args).returncode != 0:
        return None
    m = onnx.load(model, load_external_data=False)
    return [np.load(os.path.join(outdir, npy_name(o.name) + ".npy")) for o in m.graph.output]


def close(what, got, ref, tol=1e-4):
    if got is None or ref is None or len(got) != len(ref):
        return check(False, "%s: outputs present" % what)
    ok = True
    for g, r in zip(got, ref):
        if g.shape != r.shape:
            ok = check(False, "%s: shape %s vs %s" % (what, g.shape, r.shape)) and ok
            continue
        err = float(np.abs(g.astype(np.float64) - r).max()) / max(float(np.abs(r).max()), 1e-12)
        ok = check(err <= tol, "%s: within %g relative (got %.3g)" % (what, tol, err)) and ok
    return ok


def ort_matches_run(path, d):
    """The pruned model: checker, ONNX Runtime runs it, and agrees with onnx-tl run."""
    checker(path)
    os.makedirs(d, exist_ok=True)
    m = onnx.load(path)
    files = random_feeds(m, d)
    ref = outputs("ort", path, os.path.join(d, "ort"), files)
    close("onnx-tl run vs ORT on %s" % os.path.basename(path), outputs("tl", path, os.path.join(d, "run"), files), ref)
    return files, ref


def export(src, out, *flags, expect=0):
    if os.path.exists(out):
        os.remove(out)
    before = open(src, "rb").read()
    p = tl("export", src, "-o", out, *flags, expect=expect)
    check(open(src, "rb").read() == before, "input model unchanged")
    if expect:
        check(not os.path.exists(out), "nothing written on error")
        check(p.stderr.count("\n") == 1 and p.stderr.startswith("onnx-tl:"), "one error line: %s" % p.stderr.strip())
    return p


# ------------------------------------------------------------------ unstructured


def expected_mask(clean, s, exclude=()):
    """{name: bool mask of the weights to zero} as torch's global L1Unstructured on clean."""
    init = inits(clean)
    names = weight_names(clean, exclude)
    flat = np.concatenate([np.abs(init[w]).ravel() for w in names])
    k = int(round(s * flat.size))
    order = np.argsort(flat, kind="stable")
    z = np.zeros(flat.size, bool)
    z[order[:k]] = True
    out, at = {}, 0
    for w in names:
        out[w] = z[at:at + init[w].size].reshape(init[w].shape)
        at += init[w].size
    return out, k, flat.size


def check_unstructured(src, d, s, exclude=()):
    os.makedirs(d, exist_ok=True)
    flags = ["--exclude", ",".join(exclude)] if exclude else []
    export(src, d + "/clean_bn.onnx", "--no-fold-bn")
    p = export(src, d + "/p_bn.onnx", "--no-fold-bn", "--prune", s, *flags)
    export(src, d + "/p.onnx", "--prune", s, *flags)
    clean, pb, pf = (onnx.load(d + f) for f in ("/clean_bn.onnx", "/p_bn.onnx", "/p.onnx"))
    mask, k, n = expected_mask(clean, s, exclude)
    ci, bi = inits(clean), inits(pb)
    tag = "%s --prune %g" % (os.path.basename(src), s)
    same = all(np.array_equal(bi[w], np.where(mask[w], np.float32(0), ci[w])) for w in mask)
    check(same, "%s: zeros exactly at the %d of %d smallest |w| (global, ties in node order)" % (tag, k, n))
    others = all(np.array_equal(ci[t], bi[t]) for t in ci if t not in mask)
    check(others and set(ci) == set(bi), "%s: biases, BN and excluded weights untouched" % tag)
    zeros = sum(int((bi[w] == 0).sum()) for w in mask)
    check(zeros == k, "%s: sparsity exactly %d / %d = %.4f (got %d zeros)" % (tag, k, n, k / n, zeros))
    check(sorted(meta(pb).get("onnx_tl.pruned", "").split("\n")) == sorted(mask),
          "%s: onnx_tl.pruned lists %s" % (tag, list(mask)))
    check(("sparsity %.2f%%" % (100.0 * k / n)) in p.stderr, "%s: stderr reports the sparsity (%s)" % (tag, p.stderr.strip()))
    fi = inits(pf)
    listed = meta(pf).get("onnx_tl.pruned", "").split("\n")
    fz = all(t in fi and np.array_equal(fi[t] == 0, mask[t] | (ci[t] == 0)) for t in listed)
    check(len(listed) == len(mask) and fz, "%s: BN folded, the same positions zero" % tag)
    ort_matches_run(d + "/p.onnx", d + "/run_fold")
    ort_matches_run(d + "/p_bn.onnx", d + "/run_bn")
    return mask


def case_sparsity(d):
    for model, s in (("fashion_cnn", 0.5), ("fashion_cnn", 0.9), ("tiny_resnet", 0.5), ("tiny_mobilenet", 0.5),
                     ("tiny_encoder", 0.5)):
        check_unstructured(os.path.join(MODELS, model + ".onnx"), os.path.join(d, "%s_%g" % (model, s)), s)
    mask = check_unstructured(os.path.join(MODELS, "fashion_cnn.onnx"), os.path.join(d, "exclude"), 0.5,
                              exclude=("/fc/Gemm",))
    check("fc.weight" not in mask, "--exclude '/fc/Gemm': fc.weight stays dense")


# ------------------------------------------------------------------ masks in train


def train_data(d):
    r = np.random.RandomState(0)
    y = r.randint(0, 5, 60).astype(np.int64)
    x = (r.randn(60, 1, 28, 28) * 0.8 + y[:, None, None, None] * 0.3).astype(np.float32)
    np.savez(d + "/data.npz", x=x, y=y)
    return d + "/data.npz"


def check_mask_kept(model, pruned, tag, moved=True):
    m, p = inits(onnx.load(model)), inits(onnx.load(pruned))
    listed = meta(onnx.load(pruned))["onnx_tl.pruned"].split("\n")
    zero_ok = all(np.all(m[t][p[t] == 0] == 0) for t in listed)
    check(zero_ok, "%s: every pruned weight still exactly 0 (%d tensors)" % (tag, len(listed)))
    if moved:
        changed = all(np.any(m[t][p[t] != 0] != p[t][p[t] != 0]) for t in listed)
        check(changed, "%s: the other weights were trained" % tag)


def case_train(d):
    data = train_data(d)
    src = os.path.join(MODELS, "fashion_cnn.onnx")
    export(src, d + "/p.onnx", "--prune", 0.5, "--no-fold-bn")
    export(src, d + "/pf.onnx", "--prune", 0.5)
    common = ["--data", data, "--batch", 16, "--threads", 1, "--seed", 3, "--val-split", 0.2]
    for tag, model, flags in (("adam", "p", ["--optimizer", "adam", "--lr", 0.01]),
                              ("sgd momentum+wd", "p", ["--optimizer", "sgd", "--momentum", 0.9, "--weight-decay", 0.05,
                                                        "--lr", 0.05]),
                              ("adamw folded", "pf", ["--optimizer", "adamw", "--weight-decay", 0.1, "--lr", 0.01])):
        out = "%s/t_%s.onnx" % (d, tag.split()[0])
        p = tl("train", "%s/%s.onnx" % (d, model), "-o", out, "--epochs", 2, *common, *flags)
        check("pruned weight tensors (onnx_tl.pruned)" in p.stderr, "%s: train notes the masks" % tag)
        check_mask_kept(out, "%s/%s.onnx" % (d, model), "train 2 epochs %s" % tag)
        check("onnx_tl.pruned" in meta(onnx.load(out)), "%s: trained model keeps onnx_tl.pruned" % tag)
    # checkpoint + resume == uninterrupted (no validation split: OUT is the last epoch's model)
    flags = ["--optimizer", "adam", "--lr", 0.01]
    common = common[:-2] + ["--val-split", 0]
    tl("train", d + "/p.onnx", "-o", d + "/full.onnx", "--epochs", 3, *common, *flags, "--log", d + "/full.jsonl")
    shutil.rmtree(d + "/ck", ignore_errors=True)
    tl("train", d + "/p.onnx", "-o", d + "/part.onnx", "--epochs", 2, *common, *flags, "--checkpoint", d + "/ck")
    tl("train", d + "/p.onnx", "-o", d + "/resumed.onnx", "--resume", d + "/ck", "--epochs", 3, *common, *flags)
    check_mask_kept(d + "/resumed.onnx", d + "/p.onnx", "resume")
    a, b = inits(onnx.load(d + "/full.onnx")), inits(onnx.load(d + "/resumed.onnx"))
    check(set(a) == set(b) and all(np.array_equal(a[t], b[t]) for t in a),
          "2 epochs + --resume --epochs 3 equals 3 uninterrupted epochs bit for bit")
    # the final clean export keeps the zeros and drops the key
    export(d + "/resumed.onnx", d + "/final.onnx")
    f = onnx.load(d + "/final.onnx")
    check("onnx_tl.pruned" not in meta(f), "final export drops onnx_tl.pruned")
    fi, pi = inits(f), inits(onnx.load(d + "/p.onnx"))
    listed = meta(onnx.load(d + "/p.onnx"))["onnx_tl.pruned"].split("\n")
    check(all(np.all(fi[t][pi[t] == 0] == 0) for t in listed), "final export (BN folded) keeps the zeros")
    ort_matches_run(d + "/final.onnx", d + "/final_run")


# ------------------------------------------------------------------ channels


def bn_after(m, tensor):
    for n in m.graph.node:
        if n.op_type == "BatchNormalization" and n.input[0] == tensor:
            return n
    return None


def n_removed(c, frac, mult):
    """Channels graph/prune.c removes from a Conv of c output channels (--channel-multiple mult)."""
    n = min(int(round(frac * c)), c - 1)
    if mult > 1 and c >= 2 * mult:
        keep = min(max(int(round((c - n) / mult)) * mult, mult), c)
        n = c - keep
    return n


def check_channels(src, d, frac=0.3, mult=8, expect_pruned=None, expect_kept=()):
    os.makedirs(d, exist_ok=True)
    tag = "%s --prune-channels %g --channel-multiple %d" % (os.path.basename(src), frac, mult)
    flags = ["--prune-channels", frac] + (["--channel-multiple", mult] if mult != 8 else [])
    export(src, d + "/clean_bn.onnx", "--no-fold-bn")
    export(src, d + "/clean.onnx")
    p = export(src, d + "/p_bn.onnx", "--no-fold-bn", *flags)
    export(src, d + "/p.onnx", *flags)
    print(p.stderr.strip())
    clean, pb = onnx.load(d + "/clean_bn.onnx"), onnx.load(d + "/p_bn.onnx")
    ci, bi = inits(clean), inits(pb)
    pnodes = {n.name: n for n in pb.graph.node}
    zeroed = {k: v.copy() for k, v in ci.items()}
    pruned, removed_of = [], {}
    producer = {o: n for n in clean.graph.node for o in n.output}
    for n in clean.graph.node:
        if n.op_type != "Conv":
            continue
        w = ci[n.input[1]]
        q = pnodes.get(n.name)
        if q is None or bi[q.input[1]].shape[0] == w.shape[0]:
            continue
        c, c2 = w.shape[0], bi[q.input[1]].shape[0]
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if group != 1:  # a depthwise conv loses the channels of the conv before it: zero them here too
            up = producer.get(n.input[0])
            while up is not None and up.op_type != "Conv":
                up = producer.get(up.input[0])
            removed = removed_of.get(up.name if up is not None else None)
            if not check(removed is not None and group == c and len(removed) == c - c2,
                         "%s: depthwise %s follows its producer (%d -> %d)" % (tag, n.name, c, c2)):
                continue
        else:
            pruned.append(n.name)
            check(c - c2 == n_removed(c, frac, mult),
                  "%s: %s lost %d of %d channels (expected %d)" % (tag, n.name, c - c2, c, n_removed(c, frac, mult)))
            l1 = np.abs(w.astype(np.float64)).reshape(c, -1).sum(1)
            removed = np.lexsort((np.arange(c), l1))[:c - c2]
            removed_of[n.name] = removed
        zeroed[n.input[1]][removed] = 0
        if len(n.input) > 2 and n.input[2]:
            zeroed[n.input[2]][removed] = 0
        bn = bn_after(clean, n.output[0])
        if bn is not None:
            zeroed[bn.input[1]][removed] = 0
            zeroed[bn.input[2]][removed] = 0
        keep = np.setdiff1d(np.arange(c), removed)
        if bi[q.input[1]].shape[1] == w.shape[1]:  # input channels untouched: the rows are those kept
            check(np.array_equal(bi[q.input[1]], w[keep]), "%s: %s keeps the channels of largest L1 norm" % (tag, n.name))
    check(len(pruned) > 0, "%s: some Conv lost channels (%s)" % (tag, pruned))
    if expect_pruned is not None:
        check(sorted(pruned) == sorted(expect_pruned), "%s: pruned exactly %s (got %s)" % (tag, expect_pruned, pruned))
    check(not set(expect_kept) & set(pruned), "%s: convs feeding an Add kept whole" % tag)
    for f in ("clean", "clean_bn"):
        pm, cm = onnx.load(d + "/" + f.replace("clean", "p") + ".onnx"), onnx.load(d + "/" + f + ".onnx")
        np_, nc = (sum(t.size for t in inits(x).values()) for x in (pm, cm))
        sp, sc = (os.path.getsize(d + "/" + x + ".onnx") for x in (f.replace("clean", "p"), f))
        check(np_ < nc and sp < sc, "%s (%s): parameters %d < %d and file %d < %d bytes" % (tag, f, np_, nc, sp, sc))
    # zero the removed channels in the clean export: ORT must give the same outputs
    for init in clean.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(zeroed[init.name], init.name))
    onnx.save(clean, d + "/zeroed.onnx")
    files, ref_p = ort_matches_run(d + "/p_bn.onnx", d + "/run_bn")
    ref_z = outputs("ort", d + "/zeroed.onnx", d + "/ort_zeroed", files)
    close("%s: pruned (BN kept) == clean export with those channels zeroed (ORT)" % tag, ref_p, ref_z)
    _, ref_f = ort_matches_run(d + "/p.onnx", d + "/run_fold")
    close("%s: pruned (BN folded) == clean export with those channels zeroed (ORT)" % tag, ref_f, ref_z)


def case_channels(d):
    blocks = ["/layer%d/layer%d.0/conv1/Conv" % (i, i) for i in range(1, 5)]
    check_channels(os.path.join(MODELS, "tiny_resnet.onnx"), d + "/resnet", expect_pruned=blocks,
                   expect_kept=["/layer%d/layer%d.0/conv2/Conv" % (i, i) for i in range(1, 5)] + ["/conv1/Conv"])
    for mult in (1, 8):
        check_channels(os.path.join(MODELS, "fashion_cnn.onnx"), d + "/fashion%d" % mult, mult=mult,
                       expect_pruned=["/features/features.%d/Conv" % i for i in (0, 4, 8)])
    check_channels(os.path.join(MODELS, "tiny_mobilenet.onnx"), d + "/mobilenet")
    # --exclude keeps a conv whole; with --prune too
    export(os.path.join(MODELS, "fashion_cnn.onnx"), d + "/ex.onnx", "--prune-channels", 0.3, "--prune", 0.5,
           "--exclude", "/features/features.4/Conv")
    w = inits(onnx.load(d + "/ex.onnx"))
    check(w["features.4.weight"].shape[0] == 64 and w["features.8.weight"].shape[0] == 64,
          "--exclude kept features.4 whole (%s)" % (w["features.4.weight"].shape,))
    ort_matches_run(d + "/ex.onnx", d + "/ex_run")


# ------------------------------------------------------------------ accuracy on the demo task


def acc(model, data):
    p = tl("eval", model, "--data", data, "--json", "--threads", 2)
    try:
        return 100.0 * json.loads(p.stdout)["accuracy"]
    except Exception:  # noqa: BLE001
        check(False, "eval --json of %s" % model)
        return float("nan")


def case_accuracy(d):
    ff = A.fashion_folder
    if not check(bool(ff) and os.path.exists(ff), "fashion_folder binary given"):
        return
    for split, args in (("train", ["--split", "train", "--per-class", 50]),
                        ("val", ["--split", "train", "--per-class", 100, "--skip", 50]),
                        ("test", ["--split", "test", "--per-class", 200])):
        shutil.rmtree(d + "/" + split, ignore_errors=True)
        run([ff, "-o", d + "/" + split, *args, "--seed", 1, "--data-dir", A.data_dir])
    with open(d + "/labels.txt", "w") as f:
        f.write("5-Sandal\n6-Shirt\n7-Sneaker\n8-Bag\n9-Ankle-boot\n")
    common = ["--data", d + "/train", "--val", d + "/val", "--batch", 25, "--optimizer", "adam", "--seed", 1,
              "--threads", 2]
    tl("swap-head", os.path.join(MODELS, "fashion_cnn.onnx"), "-o", d + "/swapped.onnx", "--classes", 5, "--labels",
       d + "/labels.txt", "--seed", 1)
    tl("train", d + "/swapped.onnx", "-o", d + "/float.onnx", "--epochs", 8, "--lr", 0.002, *common)
    tl("train", d + "/float.onnx", "-o", d + "/float_ft.onnx", "--epochs", 2, "--lr", 0.0003, *common)
    p = export(d + "/float.onnx", d + "/pruned.onnx", "--prune", 0.5)
    check("sparsity 50.00%" in p.stderr, "50%% sparsity reached (%s)" % p.stderr.strip())
    tl("train", d + "/pruned.onnx", "-o", d + "/pruned_ft.onnx", "--epochs", 2, "--lr", 0.0003, *common)
    check_mask_kept(d + "/pruned_ft.onnx", d + "/pruned.onnx", "demo fine-tuning")
    a_f, a_ff, a_p0, a_p = (acc(d + x, d + "/test") for x in ("/float.onnx", "/float_ft.onnx", "/pruned.onnx",
                                                                "/pruned_ft.onnx"))
    print("test accuracy (1000 images): float %.2f%%, float + 2 epochs %.2f%%, pruned 50%% %.2f%%, pruned 50%% + 2 "
          "epochs %.2f%%" % (a_f, a_ff, a_p0, a_p))
    check(a_p >= a_f - 1.5, "pruned + 2 epochs (%.2f%%) within 1.5 points of float (%.2f%%)" % (a_p, a_f))
    check(a_p >= a_ff - 1.5, "pruned + 2 epochs (%.2f%%) within 1.5 points of float + 2 epochs (%.2f%%)" % (a_p, a_ff))
    check(a_f > 80, "the float model learned the task (%.2f%%)" % a_f)


# ------------------------------------------------------------------ errors


def case_errors(d):
    src = os.path.join(MODELS, "fashion_cnn.onnx")
    out = d + "/out.onnx"
    for flags in (["--prune", 0], ["--prune", 1], ["--prune", -0.1], ["--prune", "abc"], ["--prune", "0.5x"],
                  ["--prune", "nan"], ["--prune", ""], ["--prune-channels", 0], ["--prune-channels", 1.5],
                  ["--prune", 0.5, "--keep"], ["--prune-channels", 0.3, "--keep"],
                  ["--prune-channels", 0.3, "--channel-multiple", 0], ["--prune-channels", 0.3, "--channel-multiple", "x"],
                  ["--prune", 0.3, "--channel-multiple", 8],
                  ["--prune", 0.5, "--quantize", "int8", "--calib", d + "/x.npz"],
                  ["--prune-channels", 0.5, "--quantize", "int8", "--calib", d + "/x.npz"],
                  ["--exclude", "/fc/Gemm"], ["--prune", 0.5, "--exclude", ""]):
        export(src, out, *flags, expect=2)
    export(src, out, "--prune", 0.5, "--exclude", "nomatch*", expect=1)
    export(src, out, "--prune-channels", 0.5, "--exclude", "/fc/Gemm,nomatch", expect=1)
    tl("export", d + "/missing.onnx", "-o", out, "--prune", 0.5, expect=1)
    check(not os.path.exists(out), "missing model: nothing written")
    # a model without any weight to prune
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], "relu")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), d + "/relu.onnx")
    export(d + "/relu.onnx", out, "--prune", 0.5, expect=1)
    # a NaN weight
    m = onnx.load(src)
    for t in m.graph.initializer:
        if t.name == "features.4.weight":
            a = numpy_helper.to_array(t).copy()
            a.flat[5] = np.nan
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    onnx.save(m, d + "/nan.onnx")
    p = export(d + "/nan.onnx", out, "--prune", 0.5, expect=1)
    check("features.4.weight" in p.stderr, "NaN weight named")
    p = export(d + "/nan.onnx", out, "--prune-channels", 0.3, expect=1)
    check("features.4.weight" in p.stderr, "NaN weight named (channels)")


if __name__ == "__main__":
    sys.exit(otl_test.main(CASE, globals(), work=WORK))
