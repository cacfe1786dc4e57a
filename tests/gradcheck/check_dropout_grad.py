#!/usr/bin/python3
"""check_dropout_grad.py ONNX_TL WORKDIR - Dropout's gradient with a real random mask.

Finite differences cannot see a mask that changes every run (tests/gradcheck/cases_shape.py
covers Dropout's deterministic settings), so this runs `onnx-tl grad` once on Y = Dropout(W)
(and on Y = Dropout(W * V), the gradient through an intermediate value), MSE against a target T
over N elements, and checks that the backward used the forward's mask with the right scale:
  - every dW_i is either 0 (dropped) or 2/N * s * (s * W_i - T_i), s = 1 / (1 - ratio);
  - the loss recomputed from that mask equals the reported loss (forward and backward agree);
  - the fraction kept is 1 - ratio within 5 standard deviations.
Variants: opset 13 (ratio input), the model's own mask output, opset 10 (ratio attribute), and a
tensor large enough for the threaded loops. Exit status 1 on any failure.
"""
import os
import subprocess
import sys
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(path, shape, ratio, opset, mask_out, via_mul, rng):
    w = rng.uniform(0.5, 1.5, size=shape).astype(np.float32) * rng.choice([-1, 1], size=shape).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    nodes = []
    src = "w"
    v = None
    if via_mul:
        v = rng.uniform(0.5, 1.5, size=shape).astype(np.float32)
        nodes.append(helper.make_node("Constant", [], ["v"], value=numpy_helper.from_array(v, "v")))
        nodes.append(helper.make_node("Mul", ["w", "v"], ["wv"]))
        src = "wv"
    outs = ["y", "mask"] if mask_out else ["y"]
    if opset >= 12:
        nodes.append(helper.make_node("Constant", [], ["r"], value=numpy_helper.from_array(np.array(ratio, np.float32), "r")))
        nodes.append(helper.make_node("Dropout", [src, "r"], outs))
    else:
        nodes.append(helper.make_node("Dropout", [src], outs, ratio=ratio))
    graph = helper.make_graph(nodes, "dropout", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return w, v


def check(binary, work, name, shape, ratio, opset=13, mask_out=False, via_mul=False):
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    model = os.path.join(work, f"dropout_{name}.onnx")
    w, v = build(model, shape, ratio, opset, mask_out, via_mul, rng)
    t = rng.uniform(-1, 1, size=shape).astype(np.float32)
    tpath = os.path.join(work, f"dropout_{name}_target.npy")
    np.save(tpath, t)
    out = os.path.join(work, f"dropout_{name}_out")
    r = subprocess.run([binary, "grad", model, "--target", tpath, "--loss", "mse", "-o", out],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        print(f"{name}: onnx-tl grad failed: {r.stderr.strip()}", file=sys.stderr)
        return False
    loss = float(np.load(os.path.join(out, "loss.npy")))
    dw = np.load(os.path.join(out, "grad", "w.npy")).astype(np.float64)
    n = w.size
    s = 1.0 / (1.0 - ratio)
    x = w.astype(np.float64) * (v.astype(np.float64) if v is not None else 1.0)
    dx_kept = 2.0 / n * s * (s * x - t)           # d loss / d x where kept
    dw_kept = dx_kept * (v if v is not None else 1.0)
    kept = dw != 0
    ok = True
    bad = ~np.isclose(dw[kept], dw_kept[kept], rtol=1e-4, atol=1e-9)
    if bad.any():
        print(f"{name}: {bad.sum()} kept elements have a gradient other than dY * mask / (1 - ratio)", file=sys.stderr)
        ok = False
    y = np.where(kept, s * x, 0.0)
    ref = float(np.mean((y - t) ** 2))
    if not np.isclose(loss, ref, rtol=1e-4):
        print(f"{name}: loss {loss} but {ref} with the backward's mask: forward and backward masks differ", file=sys.stderr)
        ok = False
    frac = kept.mean()
    sd = np.sqrt(ratio * (1 - ratio) / n)
    if abs(frac - (1 - ratio)) > 5 * sd + 1e-12:
        print(f"{name}: kept {frac:.4f} of the elements, expected {1 - ratio:.4f}", file=sys.stderr)
        ok = False
    print(f"dropout {name}: {n} elements, kept {frac:.4f}, loss {loss:.6g}: {'ok' if ok else 'FAILED'}")
    return ok


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary, work = sys.argv[1:]
    os.makedirs(work, exist_ok=True)
    results = [
        check(binary, work, "opset13", (40, 50), 0.5),
        check(binary, work, "opset13_ratio_0.1", (30, 40), 0.1, via_mul=True),
        check(binary, work, "own_mask_output", (25, 40), 0.3, mask_out=True),
        check(binary, work, "opset10_attr", (20, 30), 0.25, opset=10),
        check(binary, work, "large_threaded", (300, 400), 0.5, via_mul=True),
    ]
    if not all(results):
        return 1
    print("dropout gradient: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
