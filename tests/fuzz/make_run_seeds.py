#!/usr/bin/python3
"""make_run_seeds.py [OUTDIR] - write the committed seed corpus of the `run`/`info` fuzzers
(tests/fuzz/seed_run): small valid models over the op families the executor implements (conv,
pooling, normalization, matrix products, activations, shape ops, reductions, logic, casts), the
tiny MLP of testdata, and a few hostile models from the malformed corpus that load but must not
run (opset 1 and 99, a missing required attribute, colliding output file names). Every model
is a few KB at most; deterministic. Run with /usr/bin/python3 (needs onnx, numpy).
"""
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "malformed"))
import make_corpus as mc  # noqa: E402


def vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def model(nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="onnx-tl-seed")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def t(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def seeds():
    rng = np.random.default_rng(7)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    out = {}
    out["base.onnx"] = mc.base_model().SerializeToString()
    out["tiny_mlp.onnx"] = open(os.path.join(HERE, "..", "..", "testdata", "models", "tiny_mlp.onnx"), "rb").read()

    n = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[1, 1]),
         helper.make_node("BatchNormalization", ["c", "s", "bb", "mu", "var"], ["n"], name="bn"),
         helper.make_node("Relu", ["n"], ["r"], name="relu"),
         helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("GlobalAveragePool", ["p"], ["gp"], name="gap"),
         helper.make_node("Flatten", ["gp"], ["fl"], name="flat"),
         helper.make_node("Gemm", ["fl", "fw", "fb"], ["y"], name="fc", transB=1)]
    inits = [t("w", f(3, 2, 3, 3)), t("b", f(3)), t("s", np.ones(3, np.float32)), t("bb", f(3)),
             t("mu", f(3)), t("var", np.ones(3, np.float32)), t("fw", f(4, 3)), t("fb", f(4))]
    out["cnn.onnx"] = model(n, [vi("x", ["N", 2, 4, 4])], [vi("y", ["N", 4])], inits)

    n = [helper.make_node("Gather", ["emb", "ids"], ["e"], name="embed"),
         helper.make_node("LayerNormalization", ["e", "g", "beta"], ["ln"], name="ln", axis=-1),
         helper.make_node("MatMul", ["ln", "wq"], ["q"], name="mm"),
         helper.make_node("Transpose", ["q"], ["qt"], name="tr", perm=[0, 2, 1]),
         helper.make_node("MatMul", ["q", "qt"], ["att"], name="mm2"),
         helper.make_node("Softmax", ["att"], ["sm"], name="sm", axis=-1),
         helper.make_node("MatMul", ["sm", "ln"], ["ctx"], name="mm3"),
         helper.make_node("ReduceMean", ["ctx"], ["y"], name="pool", axes=[1], keepdims=0)]
    inits = [t("emb", f(5, 4)), t("g", np.ones(4, np.float32)), t("beta", f(4)), t("wq", f(4, 4))]
    out["attention.onnx"] = model(n, [vi("ids", ["N", 3], TensorProto.INT64)], [vi("y", ["N", 4])], inits,
                                  opset=17)

    n = [helper.make_node("Reshape", ["x", "shp"], ["r"], name="reshape"),
         helper.make_node("Slice", ["r", "st", "en", "ax"], ["s"], name="slice"),
         helper.make_node("Concat", ["s", "s"], ["c"], name="concat", axis=1),
         helper.make_node("Split", ["c", "sp"], ["a", "b"], name="split", axis=1),
         helper.make_node("Mul", ["a", "b"], ["m"], name="mul"),
         helper.make_node("Sigmoid", ["m"], ["sg"], name="sig"),
         helper.make_node("Clip", ["sg", "lo", "hi"], ["cl"], name="clip"),
         helper.make_node("Unsqueeze", ["cl", "ua"], ["u"], name="unsq"),
         helper.make_node("Squeeze", ["u", "ua"], ["sq"], name="sq"),
         helper.make_node("ReduceSum", ["sq", "ra"], ["y"], name="rsum", keepdims=1)]
    inits = [t("shp", np.array([0, -1], np.int64)), t("st", np.array([0], np.int64)),
             t("en", np.array([2], np.int64)), t("ax", np.array([1], np.int64)),
             t("sp", np.array([2, 2], np.int64)), t("lo", np.array(0.1, np.float32)),
             t("hi", np.array(0.9, np.float32)), t("ua", np.array([0], np.int64)),
             t("ra", np.array([1], np.int64))]
    out["shapes.onnx"] = model(n, [vi("x", [2, 2, 2])], [vi("y", [2, 1])], inits)

    n = [helper.make_node("Greater", ["x", "z"], ["gt"], name="gt"),
         helper.make_node("Where", ["gt", "x", "z"], ["w"], name="where"),
         helper.make_node("Cast", ["w"], ["c"], name="cast", to=TensorProto.DOUBLE),
         helper.make_node("Cast", ["c"], ["c2"], name="cast2", to=TensorProto.FLOAT),
         helper.make_node("Dropout", ["c2"], ["d"], name="drop"),
         helper.make_node("AveragePool", ["d"], ["ap"], name="ap", kernel_shape=[2], pads=[1, 1]),
         helper.make_node("Tanh", ["ap"], ["th"], name="tanh"),
         helper.make_node("ArgMax", ["th"], ["y"], name="argmax", axis=2, keepdims=0)]
    out["logic.onnx"] = model(n, [vi("x", [1, 2, 3])], [vi("y", [1, 2], TensorProto.INT64)],
                              [t("z", np.zeros(1, np.float32))])

    # hostile but loadable: the session must refuse them cleanly
    nodes, tensors, inputs, outputs, _ = mc.base_parts()
    for v in (1, 99):
        out["opset%d.onnx" % v] = mc.make_model(nodes, tensors, inputs, outputs,
                                                opsets=(("", v),)).SerializeToString()
    cat = [helper.make_node("Concat", ["relu_out", "relu_out"], ["cat"], name="cat1"),
           helper.make_node("Flatten", ["cat"], ["flat"], name="flatten1", axis=1),
           helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["Y"], name="fc", transB=1)]
    out["no_axis.onnx"] = mc.make_model(nodes[:2] + cat, tensors, inputs, outputs).SerializeToString()
    out["nested_if.onnx"] = mc.deep_if(3)
    return out


def main(argv):
    outdir = argv[1] if len(argv) > 1 else os.path.join(HERE, "seed_run")
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    total = 0
    for name, data in sorted(seeds().items()):
        with open(os.path.join(outdir, name), "wb") as fh:
            fh.write(data)
        total += len(data)
    assert total < 64 * 1024, total
    print("make_run_seeds.py: %d seeds, %d bytes in %s" % (len(seeds()), total, outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
