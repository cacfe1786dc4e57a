#!/usr/bin/python3
"""check_eltwise_grad.py ONNX_TL WORKDIR - the element-wise backward kernels against float64
PyTorch autograd, element by element over wide input ranges (not sampled, as otl_gradcheck is).

For every private onnx_tl.<Op>Grad kernel of ops/activation_grad.c (on X or on Y, as the rules
emit them) and ClipGrad, a model computes the forward op and its backward on float32 inputs
(PReluGrad, PowGrad, WhereGrad, MaxMinGrad: C only, covered by the gradcheck cases); each runs
  plain, 4096 elements  oneDNN eltwise backward where the kernel uses it
  plain, OTL_NO_DNNL_ELTWISE=1  the C loops
  blocked               X and dY through an identity 1x1 Conv (16 channels), so that both arrive
                        in oneDNN's blocked layout
and dX must match d/dx of the float64 function at x (rtol 1e-3 + atol 1e-6 * max|dX|; Y-based
formulas lose the precision float32 y has, which stays within that). Points within 1e-6 of a kink
are left out. Exit status 1 on any mismatch.
"""
import os
import subprocess
import sys

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

torch.set_default_dtype(torch.float64)
F = torch.nn.functional


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))


# (op, attrs, use_dst, torch function of x, x range, kinks, opset, domain)
UNARY = [
    ("Relu", {}, 1, F.relu, (-30, 30), [0]),
    ("LeakyRelu", {}, 1, lambda x: F.leaky_relu(x, 0.01), (-30, 30), [0]),
    ("LeakyRelu", {"alpha": -0.3}, 0, lambda x: torch.where(x >= 0, x, -0.3 * x), (-30, 30), [0]),
    ("Elu", {}, 1, F.elu, (-30, 30), [0]),
    ("Elu", {"alpha": -0.5}, 0, lambda x: torch.where(x >= 0, x, -0.5 * torch.expm1(x)), (-30, 30), [0]),
    ("Selu", {}, 1, F.selu, (-30, 30), [0]),
    ("Celu", {"alpha": 2.0}, 1, lambda x: F.celu(x, 2.0), (-30, 30), [0]),
    ("Sigmoid", {}, 1, torch.sigmoid, (-30, 30), []),
    ("HardSigmoid", {}, 1, lambda x: torch.clamp(0.2 * x + 0.5, 0, 1), (-10, 10), [-2.5, 2.5]),
    ("HardSwish", {}, 0, F.hardswish, (-10, 10), [-3, 3]),
    ("Tanh", {}, 1, torch.tanh, (-30, 30), []),
    ("Gelu", {}, 0, F.gelu, (-30, 30), []),
    ("Gelu", {"approximate": "tanh"}, 0, gelu_tanh, (-30, 30), []),
    ("Softplus", {}, 1, F.softplus, (-30, 30), []),
    ("Softsign", {}, 0, F.softsign, (-30, 30), []),
    ("Mish", {}, 0, F.mish, (-30, 30), []),
    ("ThresholdedRelu", {"alpha": 0.5}, 1, lambda x: torch.where(x > 0.5, x, 0 * x), (-10, 10), [0.5]),
    ("Shrink", {"lambd": 0.4, "bias": 0.1}, 0, lambda x: torch.where(x < -0.4, x + 0.1, torch.where(x > 0.4, x - 0.1, 0 * x)),
     (-10, 10), [-0.4, 0.4]),
    ("Sqrt", {}, 1, torch.sqrt, (1e-3, 100), []),
    ("Abs", {}, 0, torch.abs, (-30, 30), [0]),
    ("Reciprocal", {}, 1, torch.reciprocal, (0.05, 30), []),
    ("Erf", {}, 0, torch.erf, (-6, 6), []),
    ("Sin", {}, 0, torch.sin, (-10, 10), []),
    ("Cos", {}, 0, torch.cos, (-10, 10), []),
    ("Tan", {}, 1, torch.tan, (-1.4, 1.4), []),
    ("Asin", {}, 0, torch.asin, (-0.99, 0.99), []),
    ("Acos", {}, 0, torch.acos, (-0.99, 0.99), []),
    ("Atan", {}, 0, torch.atan, (-30, 30), []),
    ("Sinh", {}, 0, torch.sinh, (-10, 10), []),
    ("Cosh", {}, 0, torch.cosh, (-10, 10), []),
    ("Asinh", {}, 0, torch.asinh, (-30, 30), []),
    ("Acosh", {}, 0, torch.acosh, (1.01, 30), []),
    ("Atanh", {}, 0, torch.atanh, (-0.99, 0.99), []),
]
OPSET = {"Gelu": 20, "Mish": 18, "HardSwish": 14, "Celu": 13}

N, C, H, W = 4, 16, 8, 8  # 4096 elements


def inputs(lo, hi, kinks, rng):
    x = rng.uniform(lo, hi, size=(N, C, H, W))
    x.flat[:64] = np.linspace(lo, hi, 64)
    for k in kinks:  # a few just beside each kink
        x.flat[64:70] = k + np.array([-1e-3, 1e-3, -0.1, 0.1, -1e-4, 1e-4])
    x = x.astype(np.float32)
    dy = rng.uniform(-1, 1, size=x.shape).astype(np.float32)
    return x, dy


def identity_conv(name_in, name_out, w_name):
    return helper.make_node("Conv", [name_in, w_name], [name_out], kernel_shape=[1, 1])


def build(op, attrs, use_dst, opset, domain, blocked, extra_inputs=(), grad_op=None, grad_extra=()):
    """X, DY -> [Conv identity ->] Y = op(X, extra...); DX = <op>Grad(DY, X or Y, grad_extra...)."""
    nodes, inits = [], []
    xin, dyin = "X", "DY"
    if blocked:
        eye = np.eye(C, dtype=np.float32).reshape(C, C, 1, 1)
        inits.append(numpy_helper.from_array(eye, "I"))
        nodes += [identity_conv("X", "Xb", "I"), identity_conv("DY", "DYb", "I")]
        xin, dyin = "Xb", "DYb"
    nodes.append(helper.make_node(op, [xin, *extra_inputs], ["Y"], domain=domain, **attrs))
    gattrs = dict(attrs)
    gattrs["use_dst"] = use_dst
    nodes.append(helper.make_node(grad_op or op + "Grad", [dyin, "Y" if use_dst else xin, *grad_extra], ["DX"],
                                  domain="onnx_tl", **gattrs))
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [N, C, H, W])
    graph = helper.make_graph(nodes, "g", [vi("X"), vi("DY")], [vi("DX")], inits)
    imports = [helper.make_opsetid("", opset), helper.make_opsetid("onnx_tl", 1)]
    if domain:
        imports.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=imports)


def run(exe, model, feeds, work, env_extra):
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "m.onnx")
    onnx.save(model, path)
    args = [exe, "run", path, "--outdir", work]
    for k, v in feeds.items():
        np.save(os.path.join(work, k + ".npy"), v)
        args += ["--input", f"{k}={os.path.join(work, k + '.npy')}"]
    env = dict(os.environ, OTL_NO_FUSE="1", **env_extra)
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    if r.returncode:
        raise RuntimeError(r.stderr.strip())
    return np.load(os.path.join(work, "DX.npy"))


def compare(name, got, ref, mask):
    err = np.abs(got.astype(np.float64) - ref)
    tol = 1e-3 * np.abs(ref) + 1e-6 * max(np.abs(ref[mask]).max(), 1e-30)
    bad = mask & ~(err <= tol)
    worst = np.argmax(np.where(mask, err / tol, 0))
    ok = not bad.any()
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max err/tol {np.where(mask, err / tol, 0).max():.3g}"
          f"{'' if ok else f' ({bad.sum()} elements; worst got {got.flat[worst]:.7g} want {ref.flat[worst]:.7g})'}")
    return ok


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    exe, work = sys.argv[1:]
    rng = np.random.RandomState(7)
    failures = 0
    for op, attrs, use_dst, fn, (lo, hi), kinks in UNARY:
        x, dy = inputs(lo, hi, kinks, rng)
        xt = torch.tensor(x.astype(np.float64), requires_grad=True)
        fn(xt).backward(torch.tensor(dy.astype(np.float64)))
        ref = xt.grad.numpy()
        mask = np.ones(x.shape, bool)
        for k in kinks:
            mask &= np.abs(x.astype(np.float64) - k) > 1e-6
        opset = OPSET.get(op, 13)
        for label, blocked, env in (("dnnl", 0, {}), ("c", 0, {"OTL_NO_DNNL_ELTWISE": "1"}), ("blocked", 1, {})):
            name = f"{op}{attrs if attrs else ''} use_dst={use_dst} {label}"
            try:
                got = run(exe, build(op, attrs, use_dst, opset, "", blocked), {"X": x, "DY": dy}, work, env)
            except RuntimeError as e:
                print(f"FAIL {name}: {e}")
                failures += 1
                continue
            failures += not compare(name, got, ref, mask)
    # Clip: bounds as Constant inputs
    for lo_b, hi_b in ((-0.5, 0.6), (0.0, 6.0)):
        x, dy = inputs(-10, 10, [lo_b, hi_b], rng)
        ref = np.where((x > lo_b) & (x < hi_b), dy, 0).astype(np.float64)
        mask = (np.abs(x - lo_b) > 1e-6) & (np.abs(x - hi_b) > 1e-6)
        for label, blocked, env in (("dnnl", 0, {}), ("c", 0, {"OTL_NO_DNNL_ELTWISE": "1"}), ("blocked", 1, {})):
            m = build("Clip", {}, 1, 13, "", blocked, ("lo", "hi"), "ClipGrad", ("lo", "hi"))
            m.graph.node.insert(0, helper.make_node("Constant", [], ["lo"], value=numpy_helper.from_array(np.array(lo_b, np.float32), "lo")))
            m.graph.node.insert(1, helper.make_node("Constant", [], ["hi"], value=numpy_helper.from_array(np.array(hi_b, np.float32), "hi")))
            try:
                got = run(exe, m, {"X": x, "DY": dy}, work, env)
            except RuntimeError as e:
                print(f"FAIL Clip {label}: {e}")
                failures += 1
                continue
            failures += not compare(f"Clip[{lo_b}, {hi_b}] {label}", got, ref, mask)
    print("overall:", "FAILED" if failures else "ok", f"({failures} failures)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
