#!/usr/bin/python3
"""check_linalg_grad.py ONNX_TL WORKDIR - the matrix-product, normalization, softmax and
reduction gradients (ops/matmul.c, ops/layernorm.c, ops/softmax.c, ops/reduce.c) against
float64 PyTorch autograd, exactly rather than by sampled finite differences.

Each case is a one-op model at a realistic size (transformer-like shapes) whose float32
initializers are all parameters; `onnx-tl grad --loss mse` against a seeded target must give
the loss and every parameter gradient of the same function evaluated in float64 by torch:
per tensor max|a-b| <= 1e-6 + 1e-4 * max|b|. The cases pick every kernel path the gradcheck
cases (tests/gradcheck/cases_linalg.py) see only at toy sizes or through finite differences
that float32 rounding blurs: MatMulGrad's folded and scratch layouts, oneDNN softmax and layer
norm backward against the C loops, the reduction group walk. Exit status 1 on any mismatch.
"""
import os
import subprocess
import sys

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

torch.set_default_dtype(torch.float64)
RNG = np.random.RandomState(20240611)
RTOL, ATOL = 1e-4, 1e-6


def rand(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


def distinct(*shape):
    """Shuffled distinct values (no ties for max/min)."""
    n = int(np.prod(shape))
    return (RNG.permutation(n) * (2.0 / n) - 1.0).reshape(shape).astype(np.float32)


def case(name, op, params, fn, attrs=None, opset=13, consts=None, ints=None):
    """op(params..., consts..., ints...) in ONNX (params as initializers in order, then named
    Constant inputs and int64 initializers) and fn(*params as torch) as the float64 reference."""
    return dict(name=name, op=op, params=params, fn=fn, attrs=attrs or {}, opset=opset,
                consts=consts or {}, ints=ints or {})


def model(c):
    inits, nodes, names = [], [], []
    for k, v in c["params"].items():
        inits.append(numpy_helper.from_array(v, k))
        names.append(k)
    for k, v in c["consts"].items():
        nodes.append(helper.make_node("Constant", [], [k], value=numpy_helper.from_array(v, k)))
        names.append(k)
    for k, v in c["ints"].items():
        inits.append(numpy_helper.from_array(v, k))
        names.append(k)
    order = c.get("order")
    if order:
        names = order
    nodes.append(helper.make_node(c["op"], names, ["y"], **c["attrs"]))
    g = helper.make_graph(nodes, c["name"], [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", c["opset"])])


def legacy_softmax(x, axis, log):
    shape = x.shape
    x2 = x.reshape(int(np.prod(shape[:axis])), -1)
    y = torch.log_softmax(x2, 1) if log else torch.softmax(x2, 1)
    return y.reshape(shape)


def layer_norm(x, s, b, axis, eps=1e-5):
    dims = tuple(range(axis % x.dim(), x.dim()))
    m = x.mean(dims, keepdim=True)
    v = ((x - m) ** 2).mean(dims, keepdim=True)
    y = (x - m) / torch.sqrt(v + eps) * s
    return y + b if b is not None else y


def gemm(a, b, c, ta=0, tb=0, alpha=1.0, beta=1.0):
    return alpha * (a.T if ta else a) @ (b.T if tb else b) + beta * c


CASES = [
    # MatMulGrad layouts
    case("matmul_linear3d", "MatMul", {"x": rand(4, 50, 64), "w": rand(64, 48)}, torch.matmul),
    case("matmul_attention", "MatMul", {"q": rand(2, 4, 50, 16), "k": rand(2, 4, 16, 50)}, torch.matmul),
    case("matmul_bcast_a_scratch", "MatMul", {"a": rand(50, 32), "b": rand(3, 32, 24)}, torch.matmul),
    case("matmul_bcast_mixed", "MatMul", {"a": rand(2, 1, 20, 16), "b": rand(1, 3, 16, 12)}, torch.matmul),
    case("matmul_vec_a", "MatMul", {"a": rand(64), "b": rand(4, 64, 32)}, torch.matmul),
    case("matmul_vec_b", "MatMul", {"a": rand(4, 50, 64), "b": rand(64)}, torch.matmul),
    case("matmul_x_only", "MatMul", {"x": rand(4, 30, 64)}, lambda x: x @ torch.from_numpy(W_CONST.astype(np.float64)),
         consts={"w": None}),
    # Gemm
    case("gemm_linear", "Gemm", {"x": rand(200, 64), "w": rand(96, 64), "b": rand(96)},
         lambda x, w, b: gemm(x, w, b, tb=1), {"transB": 1}),
    case("gemm_transA_alpha_beta", "Gemm", {"a": rand(64, 100), "b": rand(64, 80), "c": rand(100, 1)},
         lambda a, b, c: gemm(a, b, c, ta=1, alpha=0.5, beta=2.0), {"transA": 1, "alpha": 0.5, "beta": 2.0}),
    case("gemm_transAB", "Gemm", {"a": rand(64, 40), "b": rand(30, 64), "c": rand(30)},
         lambda a, b, c: gemm(a, b, c, ta=1, tb=1, alpha=1.5, beta=-1.0),
         {"transA": 1, "transB": 1, "alpha": 1.5, "beta": -1.0}),
    # softmax: oneDNN (last axis) and the C loops (trailing dims)
    case("softmax_attention", "Softmax", {"x": rand(2, 4, 50, 50, lo=-4, hi=4)}, lambda x: torch.softmax(x, -1)),
    case("softmax_channels", "Softmax", {"x": rand(4, 32, 7, 7, lo=-4, hi=4)}, lambda x: torch.softmax(x, 1),
         {"axis": 1}),
    case("logsoftmax_classes", "LogSoftmax", {"x": rand(64, 1000, lo=-4, hi=4)}, lambda x: torch.log_softmax(x, -1)),
    case("logsoftmax_legacy", "LogSoftmax", {"x": rand(8, 10, 12, lo=-4, hi=4)},
         lambda x: legacy_softmax(x, 1, True), opset=11),
    case("softmax_legacy_axis2", "Softmax", {"x": rand(4, 3, 5, 6, lo=-4, hi=4)},
         lambda x: legacy_softmax(x, 2, False), {"axis": 2}, opset=11),
    # layer normalization: oneDNN backward, broadcast parameters, the C loops
    case("layernorm_tokens", "LayerNormalization", {"x": rand(4, 50, 64), "s": rand(64, lo=0.5, hi=1.5), "b": rand(64)},
         lambda x, s, b: layer_norm(x, s, b, -1), opset=17),
    case("layernorm_bcast", "LayerNormalization", {"x": rand(2, 10, 8, 6), "s": rand(8, 1), "b": rand(6)},
         lambda x, s, b: layer_norm(x, s, b, -2), {"axis": -2}, opset=17),
    case("layernorm_stash_double", "LayerNormalization", {"x": rand(16, 96), "s": rand(96), "b": rand(96)},
         lambda x, s, b: layer_norm(x, s, b, -1, 1e-3), {"stash_type": 11, "epsilon": 1e-3}, opset=17),
    case("layernorm_params_only", "LayerNormalization", {"s": rand(64), "b": rand(64)},
         lambda s, b: layer_norm(torch.from_numpy(X_CONST.astype(np.float64)), s, b, -1), opset=17,
         consts={"x": None}),
    # reductions
    case("reducemean_tokens", "ReduceMean", {"x": rand(4, 197, 64)}, lambda x: x.mean(1), {"axes": [1], "keepdims": 0}),
    case("reducesum_axes02", "ReduceSum", {"x": rand(6, 20, 8)}, lambda x: x.sum((0, 2), keepdim=True),
         ints={"axes": np.array([0, 2], np.int64)}),
    case("reducemax_rows", "ReduceMax", {"x": distinct(8, 100)}, lambda x: x.amax(1), {"axes": [1], "keepdims": 0}),
    case("reducelogsumexp", "ReduceLogSumExp", {"x": rand(8, 50, 20, lo=-3, hi=3)},
         lambda x: torch.logsumexp(x, 1, keepdim=True), {"axes": [1]}),
    case("reducel2", "ReduceL2", {"x": rand(16, 64)}, lambda x: torch.sqrt((x * x).sum(-1)), {"axes": [-1], "keepdims": 0}),
]

W_CONST = rand(64, 48)
X_CONST = rand(8, 20, 64)
for c in CASES:
    if "w" in c["consts"]:
        c["consts"]["w"] = W_CONST
        c["order"] = ["x", "w"]
    if "x" in c["consts"]:
        c["consts"]["x"] = X_CONST
        c["order"] = ["x", "s", "b"]


def check(onnx_tl, work, c):
    d = os.path.join(work, c["name"])
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    onnx.save(model(c), path)
    ps = {k: torch.from_numpy(v.astype(np.float64)).requires_grad_() for k, v in c["params"].items()}
    y = c["fn"](*ps.values())
    t = RNG.uniform(-1, 1, size=tuple(y.shape)).astype(np.float32)
    np.save(os.path.join(d, "target.npy"), t)
    loss = ((y - torch.from_numpy(t.astype(np.float64))) ** 2).mean()
    loss.backward()
    out = os.path.join(d, "out")
    r = subprocess.run([onnx_tl, "grad", path, "--target", os.path.join(d, "target.npy"), "--loss", "mse",
                        "-o", out, "--threads", "2"], capture_output=True, text=True, timeout=300)
    if r.returncode:
        print(f"FAIL {c['name']}: onnx-tl grad failed:\n{r.stderr}")
        return False
    ok = True
    got = {"loss": np.load(os.path.join(out, "loss.npy"))}
    want = {"loss": loss.detach().numpy()}
    for k, p in ps.items():
        got[k] = np.load(os.path.join(out, "grad", k + ".npy"))
        want[k] = p.grad.numpy()
    worst = []
    for k in want:
        a, b = got[k].astype(np.float64), want[k]
        if a.shape != b.shape:
            print(f"FAIL {c['name']}: {k} has shape {a.shape}, expected {b.shape}")
            ok = False
            continue
        err, scale = float(np.abs(a - b).max()), float(np.abs(b).max())
        worst.append(f"{k} rel {err / scale if scale else err:.2g}")
        if err > ATOL + RTOL * scale:
            print(f"FAIL {c['name']}: {k}: max|a-b| {err:.3g} > {ATOL} + {RTOL} * max|b| ({scale:.3g})")
            ok = False
    if ok:
        print(f"ok {c['name']}: {', '.join(worst)}")
    return ok


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    onnx_tl, work = sys.argv[1:]
    failed = [c["name"] for c in CASES if not check(onnx_tl, work, c)]
    if failed:
        print(f"check_linalg_grad: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"check_linalg_grad: {len(CASES)} cases match float64 autograd")
    return 0


if __name__ == "__main__":
    sys.exit(main())
