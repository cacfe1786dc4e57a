#!/usr/bin/python3
"""check_conv_head.py - one classifier head for every command on a 1x1-Conv classifier (SqueezeNet).

    check_conv_head.py ONNX_TL MODEL WORKDIR

`info` used to report no head on torchvision's squeezenet1_1 and `freeze --all-but-head` refused it,
while `swap-head` found and replaced its 1x1 Conv classifier. Now all three agree (otl_find_classifier):
  - info --json: head = that Conv (op Conv, classes = its weight's K, features = its C, no bias node);
  - freeze --all-but-head: exactly that Conv's weight and bias stay trainable (python-onnx count);
  - swap-head --classes 3: replaces the node info named.
Exit status 0 when all hold, 1 otherwise.
"""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        sys.exit(f"FAIL: {' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout + p.stderr


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    tl, model, work = sys.argv[1:]
    os.makedirs(work, exist_ok=True)
    fails = []
    m = onnx.load(model)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    # the reference: the last Conv (1x1) before the output, found with python-onnx
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    conv = convs[-1]
    w = inits[conv.input[1]]
    want_trainable = int(w.size + (inits[conv.input[2]].size if len(conv.input) > 2 else 0))
    head = json.loads(run([tl, "info", model, "--json"]))["head"]
    print("info head:", head)
    if not head or head.get("node") != conv.name or head.get("op") != "Conv":
        fails.append(f"info --json head {head}, want node {conv.name!r} (Conv)")
    elif head.get("classes") != w.shape[0] or head.get("features") != w.shape[1] or head.get("bias_node") is not None:
        fails.append(f"info --json head {head}: classes/features/bias_node, want {w.shape[0]}/{w.shape[1]}/None")
    frozen = os.path.join(work, "frozen.onnx")
    run([tl, "freeze", model, "-o", frozen, "--all-but-head"])
    info = json.loads(run([tl, "info", frozen, "--json"]))
    print("after freeze --all-but-head: params_trainable", info["params_trainable"], "want", want_trainable)
    if info["params_trainable"] != want_trainable:
        fails.append(f"freeze --all-but-head: {info['params_trainable']} trainable, want {want_trainable}")
    out = run([tl, "swap-head", model, "-o", os.path.join(work, "swapped.onnx"), "--classes", "3"])
    if f"replaced '{conv.name}'" not in out:
        fails.append(f"swap-head did not replace {conv.name!r}: {out.strip()}")
    for f in fails:
        print("FAIL:", f)
    print("OK" if not fails else f"{len(fails)} failures")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
