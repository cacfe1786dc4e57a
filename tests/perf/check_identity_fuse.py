#!/usr/bin/python3
"""check_identity_fuse.py ONNX_TL - Conv+BatchNormalization+Relu whose weights and BN parameters are
read through Identity nodes (PyTorch exports without constant folding, e.g. in training mode) are
fused like plain initializers: `onnx-tl run` (OTL_PROFILE=1) runs one FusedConv and no
BatchNormalization or Relu, with the same outputs (1e-5 relative) as the same graph without the
Identity nodes and as NumPy."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ONNX_TL = sys.argv[1]
r = np.random.RandomState(0)
x = r.randn(2, 3, 8, 8).astype(np.float32)
w = (r.randn(4, 3, 3, 3) * 0.3).astype(np.float32)
gamma, beta = r.rand(4).astype(np.float32) + 0.5, r.randn(4).astype(np.float32)
mean, var = r.randn(4).astype(np.float32), r.rand(4).astype(np.float32) + 0.5
params = {"w": w, "gamma": gamma, "beta": beta, "mean": mean, "var": var}


def model(identity):
    nodes, names = [], {}
    for k in params:
        names[k] = k
        if identity:
            nodes.append(helper.make_node("Identity", [k], [k + "_id"]))
            names[k] = k + "_id"
    nodes += [helper.make_node("Conv", ["x", names["w"]], ["c"], pads=[1, 1, 1, 1]),
              helper.make_node("BatchNormalization", ["c", names["gamma"], names["beta"], names["mean"], names["var"]],
                               ["b"]),
              helper.make_node("Relu", ["b"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in params.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def run(d, tag, m):
    path = os.path.join(d, tag + ".onnx")
    onnx.save(m, path)
    p = subprocess.run([ONNX_TL, "run", path, "--input", "x=" + os.path.join(d, "x.npy"), "--outdir",
                        os.path.join(d, tag)], capture_output=True, text=True, env=dict(os.environ, OTL_PROFILE="1"))
    if p.returncode:
        print(p.stderr)
        sys.exit(1)
    ops = {ln.split()[1] for ln in p.stderr.splitlines() if ln.startswith("profile: ") and "ms" in ln and "%" in ln}
    return np.load(os.path.join(d, tag, "y.npy")), ops


failed = []
with tempfile.TemporaryDirectory() as d:
    np.save(os.path.join(d, "x.npy"), x)
    y_plain, ops_plain = run(d, "plain", model(False))
    y_id, ops_id = run(d, "identity", model(True))
pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
conv = np.zeros((2, 4, 8, 8), np.float64)
for i in range(3):
    for j in range(3):
        conv += np.einsum("nchw,oc->nohw", pad[:, :, i:i + 8, j:j + 8], w[:, :, i, j])
ref = np.maximum((conv - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5) *
                 gamma[None, :, None, None] + beta[None, :, None, None], 0)
for what, ok in [("plain graph fused: %s" % sorted(ops_plain), ops_plain - {"Reorder"} == {"FusedConv"}),
                 ("Identity-read weights fused the same: %s" % sorted(ops_id), ops_id - {"Reorder"} == {"FusedConv"}),
                 ("outputs equal (max diff %.2g)" % np.abs(y_id - y_plain).max(),
                  np.abs(y_id - y_plain).max() <= 1e-5 * np.abs(y_plain).max()),
                 ("matches NumPy (max diff %.2g)" % np.abs(y_id - ref).max(),
                  np.abs(y_id - ref).max() <= 1e-4 * np.abs(ref).max())]:
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failed.append(what)
sys.exit(1 if failed else 0)
