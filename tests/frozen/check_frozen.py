#!/usr/bin/python3
"""check_frozen.py - frozen convolutions of a training session run like inference (issue 7):
src/exec.c marks the nodes no gradient flows through (otl_no_grad_nodes, graph/fuse.c), ops/conv.c
runs those with oneDNN's forward_inference kernels (Winograd, the nChw16c stem and chains) and
graph/fuse.c marks their nChw16c chains; OTL_FROZEN_INFER=0 restores the old per-session rule.

    check_frozen.py ONNX_TL WORKDIR

Builds a small CNN with onnx.helper (seeded weights; no PyTorch needed):
    x (2,3,12,12) -> c1 Conv 3->16 7x7 (the stem) -> BN -> Relu -> c2 Conv 16->16 3x3 -> BN -> Relu
      -> c3 Conv 16->32 3x3 -> Relu -> c4 Conv 32->32 3x3 -> Relu -> GlobalAveragePool -> Flatten
      -> Gemm (5 classes)
and runs `onnx-tl grad` with ONEDNN_VERBOSE=1 on three freezings, each with --bn train and
--bn frozen, and again with OTL_FROZEN_INFER=0. Checks:
  - prefix frozen (c1..c3 frozen, c4 and the head trainable): the forward convolutions of c1, c2
    and c3 are forward_inference (c2 and c3 on Winograd), c4's is forward_training; with
    OTL_FROZEN_INFER=0 every forward convolution is forward_training (the switch is live);
  - all but the head frozen (`freeze --all-but-head`): every forward convolution is
    forward_inference (with --bn frozen the fused inference graph, nChw16c chain marks included);
  - only c3 frozen (gradual unfreezing the other way round: a gradient flows through c3 to c1 and
    c2): every forward convolution stays forward_training;
  - nothing frozen: every forward convolution is forward_training;
  - loss and every gradient equal the OTL_FROZEN_INFER=0 run's within 1e-5 (relative to the
    largest magnitude), and the set of gradient files is the same.
And a small MLP (x (16,64) -> MatMul 64x128 -> Relu -> MatMul 128x64 -> Relu -> Gemm head), all but
the head frozen: the two frozen MatMuls run on weights packed once into oneDNN's own layout (as in
inference; ops/matmul.c), the plain layout with OTL_FROZEN_INFER=0 or when they are trainable;
loss and gradients as above.
Exit status 0 when all checks pass, 1 otherwise (each failure printed), 2 on bad usage.
"""
import os
import re
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FAIL = []


def check(cond, msg):
    if not cond:
        FAIL.append(msg)
        print("FAIL:", msg)


def make_model(path):
    rng = np.random.default_rng(11)
    inits, nodes = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(arr.astype(np.float32), name))

    def conv(name, x, cin, cout, k, y):
        init(name + ".w", rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k)))
        init(name + ".b", rng.standard_normal(cout) * 0.1)
        nodes.append(helper.make_node("Conv", [x, name + ".w", name + ".b"], [y], name=name,
                                      kernel_shape=[k, k], pads=[k // 2] * 4))

    def bn(name, x, c, y):
        init(name + ".scale", 1 + 0.1 * rng.standard_normal(c))
        init(name + ".bias", 0.1 * rng.standard_normal(c))
        init(name + ".mean", 0.1 * rng.standard_normal(c))
        init(name + ".var", 1 + 0.1 * rng.random(c))
        nodes.append(helper.make_node("BatchNormalization", [x, name + ".scale", name + ".bias", name + ".mean",
                                                              name + ".var"], [y], name=name))

    def relu(x, y):
        nodes.append(helper.make_node("Relu", [x], [y], name=y))

    conv("c1", "x", 3, 16, 7, "c1o")
    bn("bn1", "c1o", 16, "bn1o")
    relu("bn1o", "r1")
    conv("c2", "r1", 16, 16, 3, "c2o")
    bn("bn2", "c2o", 16, "bn2o")
    relu("bn2o", "r2")
    conv("c3", "r2", 16, 32, 3, "c3o")
    relu("c3o", "r3")
    conv("c4", "r3", 32, 32, 3, "c4o")
    relu("c4o", "r4")
    nodes.append(helper.make_node("GlobalAveragePool", ["r4"], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flat", axis=1))
    init("fc.w", rng.standard_normal((5, 32)) * 0.2)
    init("fc.b", np.zeros(5))
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1))
    g = helper.make_graph(nodes, "frozen_cnn",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="check_frozen")
    onnx.checker.check_model(m)
    onnx.save(m, path)


def run(cmd, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {p.returncode}):\n{p.stderr.decode()[-3000:]}")
    return p.stdout.decode()


# the forward convolutions of the model, by oneDNN's problem descriptor
CONVS = {"c1": (3, 16, 7), "c2": (16, 16, 3), "c3": (16, 32, 3), "c4": (32, 32, 3)}


def forward_convs(log):
    """{conv name: set of (prop kind, implementation)} of the forward convolution primitives run."""
    seen = {}
    for line in log.splitlines():
        if not line.startswith("onednn_verbose,") or ",exec," not in line:
            continue
        f = line.split(",")
        if "convolution" not in f or not any(x.startswith("forward") for x in f):
            continue
        prop = next(x for x in f if x.startswith("forward"))
        impl = f[f.index("convolution") + 1]
        m = re.search(r"ic(\d+)(?:ih\d+)?oc(\d+).*?kh(\d+)", line)
        m = m or re.search(r"ic(\d+)oc(\d+).*?kh(\d+)", line)
        if not m:
            continue
        key = tuple(int(v) for v in m.groups())
        for name, d in CONVS.items():
            if d == key:
                seen.setdefault(name, set()).add((prop, impl))
    return seen


def grads(outdir):
    out = {"loss": np.load(os.path.join(outdir, "loss.npy"))}
    gd = os.path.join(outdir, "grad")
    for f in sorted(os.listdir(gd)):
        out[f] = np.load(os.path.join(gd, f))
    return out


def make_mlp(path):
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)
             for name, shape in (("l1.w", (64, 128)), ("l2.w", (128, 64)), ("fc.w", (64, 5)), ("fc.b", (5,)))]
    nodes = [helper.make_node("MatMul", ["x", "l1.w"], ["h1"], name="l1"),
             helper.make_node("Relu", ["h1"], ["r1"], name="r1"),
             helper.make_node("MatMul", ["r1", "l2.w"], ["h2"], name="l2"),
             helper.make_node("Relu", ["h2"], ["r2"], name="r2"),
             helper.make_node("Gemm", ["r2", "fc.w", "fc.b"], ["logits"], name="fc")]
    g = helper.make_graph(nodes, "frozen_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="check_frozen")
    onnx.checker.check_model(m)
    onnx.save(m, path)


def matmul_weights(log):
    """{(K, N): weight layout} of the first matmul run of each 16xK by KxN problem with
    (K, N) one of the MLP's hidden layers: its forward (the backward ones come later)."""
    seen = {}
    for line in log.splitlines():
        f = line.split(",")
        if not line.startswith("onednn_verbose,exec,") or "matmul" not in f:
            continue
        m = re.search(r",16x(\d+):(\d+)x(\d+):16x\d+,", line)
        w = re.search(r"wei_f32::blocked:(\w+)", line)
        key = (int(m.group(2)), int(m.group(3))) if m and m.group(1) == m.group(2) else None
        if w and key in ((64, 128), (128, 64)) and key not in seen:
            seen[key] = w.group(1)
    return seen


def check_mlp(exe, work):
    model, frozen = os.path.join(work, "mlp.onnx"), os.path.join(work, "mlp_head.onnx")
    make_mlp(model)
    run([exe, "freeze", model, "-o", frozen, "--all-but-head"])
    rng = np.random.default_rng(6)
    xf, yf = os.path.join(work, "mlp_x.npy"), os.path.join(work, "mlp_y.npy")
    np.save(xf, rng.standard_normal((16, 64)).astype(np.float32))
    np.save(yf, (np.arange(16) % 5).astype(np.int64))
    res = {}
    for tag, m, infer in (("head", frozen, "1"), ("head old", frozen, "0"), ("none", model, "1")):
        outdir = os.path.join(work, "mlp_" + tag.replace(" ", "_"))
        env = dict(os.environ, ONEDNN_VERBOSE="1", OTL_FROZEN_INFER=infer)
        log = run([exe, "grad", m, "--input", f"x={xf}", "--target", yf, "-o", outdir, "--threads", "2"], env)
        res[tag] = (matmul_weights(log), grads(outdir))
        print(f"mlp {tag}: forward matmul weight layouts {sorted(res[tag][0].items())}")
    for tag, packed in (("head", True), ("head old", False), ("none", False)):
        w = res[tag][0]
        check(set(w) == {(64, 128), (128, 64)}, f"mlp {tag}: forward matmuls seen {sorted(w)}")
        for k, v in w.items():
            check((v != "ab") == packed, f"mlp {tag}: matmul {k} weights {v}, want packed {packed}")
    g_new, g_old = res["head"][1], res["head old"][1]
    check(sorted(g_new) == sorted(g_old) == ["fc.b.npy", "fc.w.npy", "loss"], f"mlp: gradient files {sorted(g_new)}")
    for k in g_old:
        if k in g_new:
            a, b = g_new[k].astype(np.float64), g_old[k].astype(np.float64)
            err = float(np.abs(a - b).max()) / max(float(np.abs(b).max()), 1e-30)
            check(a.shape == b.shape and err <= 1e-5, f"mlp: {k} differs from the old path (rel {err:.3g})")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    exe, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    model = os.path.join(work, "cnn.onnx")
    make_model(model)
    rng = np.random.default_rng(5)
    xf, yf = os.path.join(work, "x.npy"), os.path.join(work, "y.npy")
    np.save(xf, rng.standard_normal((2, 3, 12, 12)).astype(np.float32))
    np.save(yf, np.array([1, 3], dtype=np.int64))
    freezings = {
        "prefix": ["--params", "c1.*,bn1.*,c2.*,bn2.*,c3.*"],
        "head": ["--all-but-head"],
        "middle": ["--params", "c3.*"],
        "none": None,
    }
    for fname, fargs in freezings.items():
        m = model
        if fargs:
            m = os.path.join(work, f"cnn_{fname}.onnx")
            run([exe, "freeze", model, "-o", m] + fargs)
        for bn in ("train", "frozen"):
            res = {}
            for mode in ("new", "old"):
                outdir = os.path.join(work, f"{fname}_{bn}_{mode}")
                env = dict(os.environ, ONEDNN_VERBOSE="1", OTL_FROZEN_INFER="1" if mode == "new" else "0")
                log = run([exe, "grad", m, "--input", f"x={xf}", "--target", yf, "-o", outdir, "--bn", bn,
                           "--threads", "2"], env)
                res[mode] = (forward_convs(log), grads(outdir))
            tag = f"{fname} --bn {bn}"
            convs_new, g_new = res["new"]
            convs_old, g_old = res["old"]
            print(f"{tag}: new {sorted((k, sorted(v)) for k, v in convs_new.items())}")
            check(set(convs_new) == set(CONVS), f"{tag}: forward convolutions seen {sorted(convs_new)}")
            check(set(convs_old) == set(CONVS), f"{tag}: old path: forward convolutions seen {sorted(convs_old)}")
            for name, s in convs_old.items():
                check(all(p == "forward_training" for p, _ in s), f"{tag}: old path: {name} ran {sorted(s)}")
            for name, s in convs_new.items():
                frozen = fname == "head" or (fname == "prefix" and name != "c4")
                want = "forward_inference" if frozen else "forward_training"
                check(all(p == want for p, _ in s), f"{tag}: {name} ran {sorted(s)}, want {want}")
                if frozen and name in ("c2", "c3"):
                    check(any("wino" in i for _, i in s), f"{tag}: {name} not on Winograd: {sorted(s)}")
            check(sorted(g_new) == sorted(g_old), f"{tag}: gradient files {sorted(g_new)} vs {sorted(g_old)}")
            for k in g_old:
                if k not in g_new:
                    continue
                a, b = g_new[k].astype(np.float64), g_old[k].astype(np.float64)
                scale = max(float(np.abs(b).max()), 1e-30)
                err = float(np.abs(a - b).max()) / scale
                check(a.shape == b.shape and err <= 1e-5, f"{tag}: {k} differs from the old path (rel {err:.3g})")
            n_tr = len(g_new) - 1
            print(f"{tag}: loss {float(g_new['loss']):.6f} (old {float(g_old['loss']):.6f}), {n_tr} gradients")
            check(n_tr == {"prefix": 4, "head": 2, "middle": 12, "none": 14}[fname], f"{tag}: {n_tr} gradients")
    check_mlp(exe, work)
    print("OK" if not FAIL else f"{len(FAIL)} failures")
    return 1 if FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
