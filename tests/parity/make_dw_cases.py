"""Models for the 1x1 + depthwise fusion (onnx_tl.FusedConvDw, graph/fuse.c): a 1x1 conv
followed by a 3x3 depthwise conv that may or may not be fused. `pads` absent means no padding
(the ONNX default), which the fused kernel (padding 1) must not take.
usage: make_dw_cases.py OUTDIR  -> OUTDIR/dw_<case>.onnx"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def model(name, dw_attrs):
    rng = np.random.default_rng(7)
    w1 = numpy_helper.from_array(rng.standard_normal((16, 8, 1, 1)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((16, 1, 3, 3)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="pw"),
             helper.make_node("Relu", ["c1"], ["a1"], name="act"),
             helper.make_node("Conv", ["a1", "w2"], ["c2"], name="dw", group=16, kernel_shape=[3, 3], **dw_attrs),
             helper.make_node("Relu", ["c2"], ["y"], name="act2")]
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8, 10, 11])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16, None, None])], [w1, b1, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    return m


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    cases = {"nopad": {}, "pad1": {"pads": [1, 1, 1, 1]}, "pad1_s2": {"pads": [1, 1, 1, 1], "strides": [2, 2]},
             "pad0_s2": {"pads": [0, 0, 0, 0], "strides": [2, 2]}}
    for k, attrs in cases.items():
        onnx.save(model("dw_" + k, attrs), os.path.join(out, "dw_%s.onnx" % k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
