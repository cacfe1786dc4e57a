#!/usr/bin/python3
"""Small hand-built ONNX models for the swap-head tests (committed under tests/surgery/data).

    /usr/bin/python3 tests/surgery/make_models.py tests/surgery/data

mm_head.onnx    TF/Keras style: x (N, 8) -> MatMul+Add -> Relu -> MatMul+Add ("logits", also a graph
                output) -> Reshape(const [-1, 5]) -> Softmax -> "probs" (first output); value_info
                for every intermediate tensor (the ones after the head go stale). opset 13.
old_opset.onnx  opset 11, IR 6, initializers also listed as graph inputs: x (N, 6) -> Gemm ->
                Relu -> Gemm -> y (N, 4). Dropout of the new head takes its ratio as an attribute
                at this opset; the old head's graph-input entries must go with its initializers.
flat_head.onnx  x (N, 3, H, W) with symbolic H, W -> Conv(3->4, 3x3, stride 2) -> Relu -> Flatten -> Gemm
                (1024 -> 5): only 32x32 images fit, which the stored preprocessing (onnx_tl.preprocess,
                size 32) says. swap-head --at the Flatten output must size the new head from a probe at
                32x32 (not a guessed 224x224: 50176 features).
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def mm_head(path):
    rng = np.random.default_rng(5)
    W1, b1 = rng.standard_normal((8, 16)) * 0.3, rng.standard_normal(16) * 0.1
    W2, b2 = rng.standard_normal((16, 5)) * 0.3, rng.standard_normal(5) * 0.1
    nodes = [
        helper.make_node("MatMul", ["x", "dense/kernel"], ["dense/MatMul:0"], name="dense/MatMul"),
        helper.make_node("Add", ["dense/MatMul:0", "dense/bias"], ["dense/BiasAdd:0"], name="dense/BiasAdd"),
        helper.make_node("Relu", ["dense/BiasAdd:0"], ["dense/Relu:0"], name="dense/Relu"),
        helper.make_node("MatMul", ["dense/Relu:0", "out/kernel"], ["out/MatMul:0"], name="out/MatMul"),
        helper.make_node("Add", ["out/MatMul:0", "out/bias"], ["logits"], name="out/BiasAdd"),
        helper.make_node("Reshape", ["logits", "shape"], ["out/Reshape:0"], name="out/Reshape"),
        helper.make_node("Softmax", ["out/Reshape:0"], ["probs"], name="out/Softmax", axis=-1),
    ]
    inits = [init("dense/kernel", W1), init("dense/bias", b1), init("out/kernel", W2), init("out/bias", b2),
             numpy_helper.from_array(np.array([-1, 5], dtype=np.int64), "shape")]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", d])
          for n, d in (("dense/MatMul:0", 16), ("dense/BiasAdd:0", 16), ("dense/Relu:0", 16),
                       ("out/MatMul:0", 5), ("out/Reshape:0", 5))]
    g = helper.make_graph(nodes, "mm_head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 5]),
                           helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
                          inits, value_info=vi)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_models.py")
    m.ir_version = 7
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)


def old_opset(path):
    rng = np.random.default_rng(6)
    inits = [init("fc1.weight", rng.standard_normal((12, 6)) * 0.3), init("fc1.bias", rng.standard_normal(12) * 0.1),
             init("fc2.weight", rng.standard_normal((4, 12)) * 0.3), init("fc2.bias", rng.standard_normal(4) * 0.1)]
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["y"], name="fc2", transB=1),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])]
    inputs += [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in inits]
    g = helper.make_graph(nodes, "old_opset", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                     ["batch", 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)], producer_name="make_models.py")
    m.ir_version = 6
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)


def flat_head(path):
    rng = np.random.default_rng(7)
    inits = [init("conv.weight", rng.standard_normal((4, 3, 3, 3)) * 0.3), init("conv.bias", rng.standard_normal(4) * 0.1),
             init("fc.weight", rng.standard_normal((5, 1024)) * 0.05), init("fc.bias", rng.standard_normal(5) * 0.1)]
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(nodes, "flat_head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_models.py")
    m.ir_version = 7
    helper.set_model_props(m, {"onnx_tl.preprocess": '{"size": [32, 32], "resize": "stretch", "crop": "none"}'})
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    os.makedirs(out, exist_ok=True)
    mm_head(os.path.join(out, "mm_head.onnx"))
    old_opset(os.path.join(out, "old_opset.onnx"))
    flat_head(os.path.join(out, "flat_head.onnx"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
