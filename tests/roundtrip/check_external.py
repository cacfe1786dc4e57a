#!/usr/bin/python3
"""check_external.py ONNX_TL MODEL WORKDIR --node NODE --ort-compare ORT_COMPARE_JS

External data end to end: export MODEL with --external-data (tensors of 1 KiB or more go to
OUT.data), check the files, load the result with python-onnx and ONNX Runtime (identical outputs
to MODEL), round-trip it through `export` again (external layout kept), then back to a single
embedded file with --embed-data. Exit 1 on any problem."""
import argparse
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        sys.exit(f"check_external: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def same_weights(a, b):
    ia = {t.name: numpy_helper.to_array(t) for t in a.graph.initializer}
    ib = {t.name: numpy_helper.to_array(t) for t in b.graph.initializer}
    if ia.keys() != ib.keys():
        sys.exit("check_external: initializer names differ")
    for k in ia:
        if ia[k].dtype != ib[k].dtype or ia[k].shape != ib[k].shape or ia[k].tobytes() != ib[k].tobytes():
            sys.exit(f"check_external: initializer '{k}' differs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx_tl")
    ap.add_argument("model")
    ap.add_argument("workdir")
    ap.add_argument("--node", required=True)
    ap.add_argument("--ort-compare", required=True)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    ext = os.path.join(a.workdir, "ext.onnx")
    for f in (ext, ext + ".data"):
        if os.path.exists(f):
            os.remove(f)
    run([a.onnx_tl, "export", a.model, "-o", ext, "--external-data", "--keep"])
    if not os.path.isfile(ext + ".data"):
        sys.exit("check_external: no ext.onnx.data written")
    m0 = onnx.load(a.model)
    m1 = onnx.load(ext, load_external_data=False)
    n_ext = sum(1 for t in m1.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    n_big = sum(1 for t in m0.graph.initializer if numpy_helper.to_array(t).nbytes >= 1024)
    if n_ext != n_big or n_ext == 0:
        sys.exit(f"check_external: {n_ext} external tensors, expected {n_big}")
    if os.path.getsize(ext) > os.path.getsize(a.model) // 2:
        sys.exit("check_external: the model file did not shrink")
    m1 = onnx.load(ext)
    onnx.checker.check_model(m1)
    same_weights(m0, m1)
    run([a.node, a.ort_compare, a.model, ext, "--batch", "2"])
    # info reads it; export keeps the layout
    run([a.onnx_tl, "info", ext, "--json"])
    ext2 = os.path.join(a.workdir, "ext2.onnx")
    run([a.onnx_tl, "export", ext, "-o", ext2, "--keep"])
    if not os.path.isfile(ext2 + ".data"):
        sys.exit("check_external: re-export lost the external data layout")
    same_weights(m0, onnx.load(ext2))
    emb = os.path.join(a.workdir, "embedded.onnx")
    run([a.onnx_tl, "export", ext, "-o", emb, "--embed-data", "--keep"])
    if os.path.exists(emb + ".data"):
        sys.exit("check_external: --embed-data wrote a data file")
    same_weights(m0, onnx.load(emb))
    run([a.node, a.ort_compare, a.model, emb, "--batch", "2"])
    print(f"external data: {n_ext} tensors out and back, identical weights and ORT outputs")


if __name__ == "__main__":
    main()
