#!/usr/bin/python3
"""selftest.py - the node-test runner must catch what it is meant to catch.

Usage: selftest.py OTL_NODETEST WORKDIR
Builds small ONNX backend-style test directories (Relu/Add/Identity models, .pb data sets, some
deliberately wrong) under WORKDIR and checks otl_nodetest's exit status and messages, then its
--discover mode on a fake data directory (skip list, unsupported op, unloadable model).
Exit 0 only if every check passed.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL", what)


def model(path, op, inputs, outputs, domain="", opset=13, out_types=None):
    """inputs/outputs: lists of (name, elem_type, shape)."""
    node = helper.make_node(op, [n for n, _, _ in inputs], [n for n, _, _ in outputs],
                            domain=domain)
    g = helper.make_graph([node], "g",
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs])
    imports = [helper.make_opsetid("", opset)]
    if domain:
        imports.append(helper.make_opsetid(domain, 1))
    m = helper.make_model(g, opset_imports=imports)
    m.ir_version = 8
    os.makedirs(path, exist_ok=True)
    onnx.save(m, os.path.join(path, "model.onnx"))


def dataset(path, k, inputs, outputs):
    d = os.path.join(path, "test_data_set_%d" % k)
    os.makedirs(d, exist_ok=True)
    for i, (name, a) in enumerate(inputs):
        with open(os.path.join(d, "input_%d.pb" % i), "wb") as f:
            f.write(numpy_helper.from_array(a, name).SerializeToString())
    for i, (name, a) in enumerate(outputs):
        with open(os.path.join(d, "output_%d.pb" % i), "wb") as f:
            f.write(numpy_helper.from_array(a, name).SerializeToString())


def relu_test(path, x, y, name_in="x", name_out="y", ytype=TensorProto.FLOAT, k=0):
    model(path, "Relu", [("x", TensorProto.FLOAT, list(x.shape))],
          [("y", ytype, list(y.shape))])
    dataset(path, k, [(name_in, x)], [(name_out, y)])


def run(exe, args):
    r = subprocess.run([exe] + args, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def main():
    exe, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    node = os.path.join(work, "data", "node")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    y = np.maximum(x, 0)

    cases = []  # (dir, expected exit, substrings of the output)
    relu_test(os.path.join(node, "test_ok"), x, y)
    cases.append(("test_ok", 0, ["1 data set, 0 failed"]))

    yw = y.copy()
    yw[1, 2] += 0.5
    relu_test(os.path.join(node, "test_wrong"), x, yw)
    cases.append(("test_wrong", 1, ["test_data_set_0: output 0 'y': index [1, 2]: got",
                                    "1 of 12 elements differ"]))

    yt = y * (1 + 5e-4)  # inside rtol 1e-3
    relu_test(os.path.join(node, "test_tol"), x, yt)
    cases.append(("test_tol", 0, []))

    yb = y * (1 + 2e-3)  # outside rtol 1e-3 where y != 0
    relu_test(os.path.join(node, "test_tol_out"), x, yb)
    cases.append(("test_tol_out", 1, ["elements differ"]))

    # NaN matches NaN (Identity: the runner is under test here, not an op's NaN semantics)
    xn = x.copy()
    xn[0, 0] = np.nan
    p = os.path.join(node, "test_nan")
    model(p, "Identity", [("x", TensorProto.FLOAT, [3, 4])], [("y", TensorProto.FLOAT, [3, 4])])
    dataset(p, 0, [("x", xn)], [("y", xn)])
    cases.append(("test_nan", 0, []))

    yn2 = y.copy()
    yn2[0, 1] = np.nan
    relu_test(os.path.join(node, "test_nan_expected"), x, yn2)
    cases.append(("test_nan_expected", 1, ["index [0, 1]"]))

    relu_test(os.path.join(node, "test_shape"), x, y.reshape(4, 3))
    cases.append(("test_shape", 1, ["shape (3, 4), expected (4, 3)"]))

    relu_test(os.path.join(node, "test_dtype"), x, y.astype(np.float64))
    cases.append(("test_dtype", 1, ["dtype float32, expected float64"]))

    # int64 Add, off by one in one element
    p = os.path.join(node, "test_int")
    model(p, "Add", [("a", TensorProto.INT64, [5]), ("b", TensorProto.INT64, [5])],
          [("c", TensorProto.INT64, [5])])
    a = np.arange(5, dtype=np.int64)
    c = a + a
    c[3] += 1
    dataset(p, 0, [("a", a), ("b", a)], [("c", c)])
    cases.append(("test_int", 1, ["index [3]: got 6, expected 7"]))

    # two data sets, the second wrong; data sets sorted numerically
    p = os.path.join(node, "test_sets")
    relu_test(p, x, y)
    for k in range(1, 11):
        dataset(p, k, [("x", x)], [("y", y if k != 10 else yw)])
    cases.append(("test_sets", 1, ["test_data_set_10: output 0", "11 data sets, 1 failed"]))

    # unnamed tensors in the .pb files: positional graph inputs
    p = os.path.join(node, "test_unnamed")
    model(p, "Add", [("a", TensorProto.FLOAT, [3, 4]), ("b", TensorProto.FLOAT, [3, 4])],
          [("c", TensorProto.FLOAT, [3, 4])])
    dataset(p, 0, [("", x), ("", 2 * x)], [("", 3 * x)])
    cases.append(("test_unnamed", 0, []))

    # a missing expected output / an extra output file
    p = os.path.join(node, "test_extra_output")
    relu_test(p, x, y)
    with open(os.path.join(p, "test_data_set_0", "output_1.pb"), "wb") as f:
        f.write(numpy_helper.from_array(y, "z").SerializeToString())
    cases.append(("test_extra_output", 1, ["1 outputs, expected 2"]))

    p = os.path.join(node, "test_no_sets")
    model(p, "Relu", [("x", TensorProto.FLOAT, [3, 4])], [("y", TensorProto.FLOAT, [3, 4])])
    cases.append(("test_no_sets", 1, ["no test_data_set_"]))

    p = os.path.join(node, "test_unsupported")
    model(p, "NoSuchOp", [("x", TensorProto.FLOAT, [3, 4])], [("y", TensorProto.FLOAT, [3, 4])],
          domain="com.example")
    dataset(p, 0, [("x", x)], [("y", y)])
    cases.append(("test_unsupported", 1, ["NoSuchOp"]))

    p = os.path.join(node, "test_badmodel")
    os.makedirs(p)
    with open(os.path.join(p, "model.onnx"), "wb") as f:
        f.write(b"\x0a\xff\xff\xff\xff\x0fnot a model")
    cases.append(("test_badmodel", 1, ["model.onnx"]))

    relu_test(os.path.join(node, "test_skipped"), x, yw)

    for d, want_rc, needles in cases:
        rc, out = run(exe, [os.path.join(node, d)])
        check(rc == want_rc, "%s: exit %d, expected %d; output:\n%s" % (d, rc, want_rc, out))
        for s in needles:
            check(s in out, "%s: output lacks %r:\n%s" % (d, s, out))

    # tolerance options
    rc, out = run(exe, [os.path.join(node, "test_tol_out"), "--rtol", "3e-3"])
    check(rc == 0, "--rtol 3e-3 should accept test_tol_out:\n" + out)
    rc, out = run(exe, [os.path.join(node, "test_wrong"), "--atol", "0.6"])
    check(rc == 0, "--atol 0.6 should accept test_wrong:\n" + out)
    rc, out = run(exe, [os.path.join(node, "test_ok"), "--rtol", "abc"])
    check(rc == 2, "bad --rtol: exit %d" % rc)
    rc, out = run(exe, [])
    check(rc == 2, "no arguments: exit %d" % rc)
    rc, out = run(exe, [os.path.join(node, "does_not_exist")])
    check(rc == 1, "missing directory: exit %d" % rc)

    # ---- discovery
    data = os.path.join(work, "data")
    for suite in ("pytorch-converted", "pytorch-operator", "simple"):
        relu_test(os.path.join(data, suite, "test_one"), x, y)
    skip = os.path.join(work, "skip.txt")
    with open(skip, "w") as f:
        f.write("# comment\n\nnode.test_skipped  # deliberately wrong expectations\n"
                "node.test_wro*  # a pattern\n")
    gen = os.path.join(work, "gen.cmake")
    rep = os.path.join(work, "unsupported.txt")
    rc, out = run(exe, ["--discover", data, skip, gen, "--report", rep, "--exe", "/x/otl_nodetest"])
    check(rc == 0, "discover: exit %d:\n%s" % (rc, out))
    g = open(gen).read() if os.path.exists(gen) else ""
    r = open(rep).read() if os.path.exists(rep) else ""
    for name in ("node.test_ok", "node.test_badmodel", "node.test_int", "simple.test_one",
                 "pytorch-converted.test_one", "pytorch-operator.test_one"):
        check('add_test("nodetest.%s" "/x/otl_nodetest" "%s/%s")' %
              (name, data, name.replace(".", "/", 1)) in g, "discover: %s not registered" % name)
    for name in ("node.test_skipped", "node.test_wrong", "node.test_unsupported"):
        check('"nodetest.%s"' % name not in g, "discover: %s registered" % name)
    check("node.test_unsupported  # " in r and "NoSuchOp" in r,
          "discover: report lacks node.test_unsupported:\n" + r)
    check("node.test_ok" not in r, "discover: report lists a supported test")
    with open(skip, "w") as f:
        f.write("node.test_skipped\n")
    rc, out = run(exe, ["--discover", data, skip, gen])
    check(rc == 1 and "has no reason" in out, "skip entry without reason: exit %d:\n%s" % (rc, out))
    shutil.rmtree(os.path.join(data, "simple"))
    with open(skip, "w") as f:
        f.write("")
    rc, out = run(exe, ["--discover", data, skip, gen])
    g = open(gen).read()
    check(rc == 0 and "nodetest.simple.missing" in g,
          "a missing suite must register a failing test:\n" + out)

    print("selftest: %d failures" % len(FAILURES))
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
