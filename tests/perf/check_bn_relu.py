#!/usr/bin/python3
"""Training-graph rewrites of graph/fuse.c around BatchNormalization, against the plain graph:
  - BatchNormalization + Relu fused (onnx_tl.BatchNormalizationRelu, and BatchNormalizationGrad
    applying oneDNN's ReLU mask); OTL_BN_RELU_FUSE=0 turns it off;
  - the output of BatchNormalization + Relu/Clip recomputed in the backward from the saved
    statistics (onnx_tl.BatchNormalizationRecompute) instead of kept alive; OTL_RECOMPUTE=0.
`onnx-tl grad` of small CNNs (residual Relu blocks with 1-D, 2-D and 3-D convolutions; a
MobileNet-style inverted residual with Clip(0, 6) and a depthwise convolution) in both --bn modes
gives the same gradients within float rounding with the rewrites on (default) and off; OTL_PROFILE=1
shows that the rewritten kernels ran exactly where the patterns allow and that recomputation
shrinks the activation arena.

    check_bn_relu.py ONNX_TL WORKDIR
"""
import os
import re
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto as T, helper as h, numpy_helper as nh

onnx_tl, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
os.chdir(work)
rs = np.random.RandomState(7)


def init(name, shape, scale=0.3):
    return nh.from_array((rs.randn(*shape) * scale).astype(np.float32), name)


def bn(p, c, x, y, nodes, inits, **attrs):
    inits += [nh.from_array((1 + 0.2 * rs.randn(c)).astype(np.float32), p + "_s"),
              nh.from_array((0.1 * rs.randn(c)).astype(np.float32), p + "_b"),
              nh.from_array((0.1 * rs.randn(c)).astype(np.float32), p + "_m"),
              nh.from_array((1 + 0.3 * rs.rand(c)).astype(np.float32), p + "_v")]
    nodes.append(h.make_node("BatchNormalization", [x, p + "_s", p + "_b", p + "_m", p + "_v"], [y], name=p, **attrs))
    return [p + "_s", p + "_b"]


def save(name, nodes, inits, in_shape, params):
    inits += [init("fc_w", [10, in_shape[1] if name.startswith("mb") else 8]), nh.from_array(np.zeros(10, np.float32), "fc_b")]
    nodes += [h.make_node("GlobalAveragePool", ["s"], ["g"]), h.make_node("Flatten", ["g"], ["f"]),
              h.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], transB=1)]
    g = h.make_graph(nodes, name, [h.make_tensor_value_info("x", T.FLOAT, ["N"] + in_shape[1:])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 10])], inits)
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 13)]), name + ".onnx")
    np.save(name + "_x.npy", rs.randn(*in_shape).astype(np.float32))
    return params + ["fc_w", "fc_b"]


def resnet_like(nsp):
    """conv-bn-relu (fusable, recomputable), conv-bn-add-relu (neither), conv-bn-relu whose BN
    output a Mul also reads (neither)."""
    c, sp, k, pads = 8, [9, 8, 5][:nsp], [3] * nsp, [1] * (2 * nsp)
    nodes, inits = [], [init("w1", [c, 3] + k), init("w2", [c, c] + k), init("w3", [c, c] + k)]
    p = ["w1", "w2", "w3"]
    nodes.append(h.make_node("Conv", ["x", "w1"], ["c1"], pads=pads))
    p += bn("bn1", c, "c1", "b1", nodes, inits, epsilon=1e-3)
    nodes += [h.make_node("Relu", ["b1"], ["r1"]), h.make_node("Conv", ["r1", "w2"], ["c2"], pads=pads)]
    p += bn("bn2", c, "c2", "b2", nodes, inits)
    nodes += [h.make_node("Add", ["b2", "r1"], ["a2"]), h.make_node("Relu", ["a2"], ["r2"]),
              h.make_node("Conv", ["r2", "w3"], ["c3"], pads=pads)]
    p += bn("bn3", c, "c3", "b3", nodes, inits)
    nodes += [h.make_node("Relu", ["b3"], ["r3"]), h.make_node("Mul", ["b3", "r3"], ["m3"]),
              h.make_node("Add", ["m3", "r2"], ["s"])]
    # fused BN+Relu: bn1; ReluGrad left for r2, r3 (of 3); recomputed: bn1
    return save("res%dd" % nsp, nodes, inits, [5, 3] + sp, p), {"fused": 1, "relugrad": 2, "recompute": 1}


def mobilenet_like():
    """1x1 expand -> BN -> Clip(0, 6) -> 3x3 depthwise -> BN -> Clip(0, 6) -> 1x1 project -> BN -> Add."""
    c, e = 8, 24
    nodes, inits = [], [init("we", [e, c, 1, 1]), init("wd", [e, 1, 3, 3]), init("wp", [c, e, 1, 1])]
    p = ["we", "wd", "wp"]
    nodes += [h.make_node("Constant", [], ["lo"], value=nh.from_array(np.array(0, np.float32))),
              h.make_node("Constant", [], ["hi"], value=nh.from_array(np.array(6, np.float32))),
              h.make_node("Conv", ["x", "we"], ["c1"])]
    p += bn("bn1", e, "c1", "b1", nodes, inits)
    nodes += [h.make_node("Clip", ["b1", "lo", "hi"], ["r1"]),
              h.make_node("Conv", ["r1", "wd"], ["c2"], group=e, pads=[1, 1, 1, 1])]
    p += bn("bn2", e, "c2", "b2", nodes, inits)
    nodes += [h.make_node("Clip", ["b2", "lo", "hi"], ["r2"]), h.make_node("Conv", ["r2", "wp"], ["c3"])]
    p += bn("bn3", c, "c3", "b3", nodes, inits)
    nodes.append(h.make_node("Add", ["b3", "x"], ["s"]))
    return save("mb2d", nodes, inits, [6, c, 12, 12], p), {"fused": 0, "relugrad": 0, "recompute": 2}


def profile_count(stderr, op):
    for ln in stderr.splitlines():
        f = ln.split()
        if ln.startswith("profile: ") and len(f) > 2 and f[1] == op:
            return int(f[-2])
    return 0


def arena_mb(stderr):
    m = re.search(r"profile: activation arena ([0-9]+) bytes", stderr)
    return int(m.group(1)) if m else None


np.save("t.npy", rs.randint(0, 10, 6).astype(np.int64))
np.save("t5.npy", rs.randint(0, 10, 5).astype(np.int64))
ok = True
for name, (params, want) in [("res1d", resnet_like(1)), ("res2d", resnet_like(2)), ("res3d", resnet_like(3)),
                             ("mb2d", mobilenet_like())]:
    for bnmode in ("train", "frozen"):
        res, arena = {}, {}
        for cfg in ("on", "off"):
            out = "o_%s_%s_%s" % (name, bnmode, cfg)
            flag = "1" if cfg == "on" else "0"
            env = dict(os.environ, OTL_BN_RELU_FUSE=flag, OTL_RECOMPUTE=flag, OTL_PROFILE="1")
            r = subprocess.run([onnx_tl, "grad", name + ".onnx", "--input", "x=%s_x.npy" % name, "--target",
                                "t.npy" if name.startswith("mb") else "t5.npy", "--bn", bnmode, "-o", out],
                               capture_output=True, text=True, env=env)
            if r.returncode:
                print("FAIL", name, bnmode, cfg, r.stderr)
                ok = False
                continue
            got = {"fused": profile_count(r.stderr, "BatchNormalizationRelu"),
                   "relugrad": profile_count(r.stderr, "ReluGrad"),
                   "recompute": profile_count(r.stderr, "BatchNormalizationRecompute")}
            exp = want if cfg == "on" else {"fused": 0, "relugrad": want["relugrad"] + want["fused"], "recompute": 0}
            if got != exp:
                print("FAIL %s --bn %s rewrites %s: kernel calls %s, expected %s" % (name, bnmode, cfg, got, exp))
                ok = False
            arena[cfg] = arena_mb(r.stderr)
            res[cfg] = {p: np.load(os.path.join(out, "grad", p + ".npy")) for p in params}
        if len(res) < 2:
            continue
        worst = 0.0
        for p in params:
            a, b = res["on"][p].astype(np.float64), res["off"][p].astype(np.float64)
            err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)
            worst = max(worst, err)
            if not np.all(np.isfinite(a)) or err > 1e-5:
                print("FAIL %s --bn %s %s: rel err %.2e" % (name, bnmode, p, err))
                ok = False
        if arena["on"] is None or arena["off"] is None or not arena["on"] < arena["off"]:
            print("FAIL %s --bn %s: activation arena %s bytes with recomputation, %s without" %
                  (name, bnmode, arena["on"], arena["off"]))
            ok = False
        print("%s --bn %s: rewritten vs plain gradients max rel err %.2e, arena %d vs %d bytes" %
              (name, bnmode, worst, arena["on"] or 0, arena["off"] or 0))
print("OK" if ok else "FAIL")
sys.exit(0 if ok else 1)
