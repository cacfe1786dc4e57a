#!/usr/bin/python3
"""run_gradcheck.py GRADCHECK_BIN OP WORKDIR - finite-difference checks of OP's gradient rule.

Builds the small models of CASES[OP] (several shapes and attribute combinations; every float
initializer is a parameter) with python-onnx, runs otl_gradcheck on each with the case's
tolerances, and exits 1 if any case fails. Adding a gradient rule means adding its cases here.
"""
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.RandomState(1234)


def rand(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


def model(op, inputs, attrs=None, opset=13, n_outputs=1, domain="", extra_nodes=()):
    """One node `op` whose inputs are initializers (name, array) or None (omitted)."""
    inits, names = [], []
    for i, arr in enumerate(inputs):
        if arr is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        inits.append(numpy_helper.from_array(arr, name))
    outs = [f"out{k}" for k in range(n_outputs)]
    node = helper.make_node(op, names, outs, name=f"{op.lower()}_node", domain=domain, **(attrs or {}))
    graph = helper.make_graph([node, *extra_nodes], "gradcheck", [],
                              [helper.make_tensor_value_info(outs[0], TensorProto.FLOAT, None)], inits)
    imports = [helper.make_opsetid("", opset)]
    if domain:
        imports.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=imports)


# op -> list of (case name, model, extra otl_gradcheck arguments)
CASES = {
    "Identity": [
        ("vector", model("Identity", [rand(7)]), []),
        ("matrix", model("Identity", [rand(3, 4)]), []),
    ],
}


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    binary, op, work = sys.argv[1:]
    if op not in CASES:
        print(f"run_gradcheck: no cases for op '{op}'", file=sys.stderr)
        return 1
    os.makedirs(work, exist_ok=True)
    failed = []
    for name, m, args in CASES[op]:
        path = os.path.join(work, f"{op}_{name}.onnx")
        onnx.save(m, path)
        r = subprocess.run([binary, path, *args], capture_output=True, text=True, timeout=300)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        if r.returncode != 0:
            failed.append(name)
    if failed:
        print(f"gradcheck {op}: FAILED cases: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"gradcheck {op}: {len(CASES[op])} cases passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
