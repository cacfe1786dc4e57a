#!/usr/bin/python3
"""make_seeds.py [OUTDIR] - write the committed seed corpus of the loader fuzzer (tests/fuzz/seed).

Tiny valid models that together touch most of the schema: every tensor data field and dtype
family, every attribute type, subgraphs, non-tensor types, symbolic dims, metadata, functions,
training info, unknown fields (kept verbatim), plus one with external data (refused when loading
from memory). Deterministic; run with /usr/bin/python3 (needs onnx 1.12+). Total well under 200 KB.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "malformed"))
import make_corpus as mc  # noqa: E402  (raw protobuf helpers and the base model)


def vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def model(nodes, inputs, outputs, inits=(), opsets=(("", 13),), **kw):
    g = helper.make_graph(nodes, kw.pop("gname", "g"), inputs, outputs, initializer=list(inits),
                          value_info=kw.pop("value_info", []))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                          producer_name="onnx-tl-seed", producer_version="1", **kw)
    m.ir_version = 8
    return m


def seeds():
    out = {}
    out["base.onnx"] = mc.base_model().SerializeToString()

    # Every TensorProto storage field.
    ints = [
        helper.make_tensor("i64", TensorProto.INT64, [2], [1, -2]),
        helper.make_tensor("i32", TensorProto.INT32, [2], [3, -4]),
        helper.make_tensor("u8", TensorProto.UINT8, [3], [0, 7, 255]),
        helper.make_tensor("b", TensorProto.BOOL, [2], [True, False]),
        helper.make_tensor("f64", TensorProto.DOUBLE, [1], [0.5]),
        helper.make_tensor("u64", TensorProto.UINT64, [1], [2 ** 63]),
        helper.make_tensor("f16", TensorProto.FLOAT16, [2], np.array([1, 2], np.float16)),
        helper.make_tensor("s", TensorProto.STRING, [2], [b"cat", b"dog"]),
        helper.make_tensor("fl", TensorProto.FLOAT, [2, 1], [1.0, 2.0]),
        numpy_helper.from_array(np.arange(4, dtype=np.int8).reshape(2, 2), "i8raw"),
    ]
    n = [helper.make_node("Identity", ["x"], ["y"], name="id", doc_string="doc")]
    m = model(n, [vi("x", TensorProto.FLOAT, ["batch", 3])],
              [vi("y", TensorProto.FLOAT, ["batch", 3])], ints,
              value_info=[vi("unused", TensorProto.INT64, [None, 2])], doc_string="model doc")
    helper.set_model_props(m, {"onnx_tl.frozen": "fl\n", "labels": "a\nb"})
    out["dtypes.onnx"] = m.SerializeToString()

    # Every attribute type, in a custom-domain node.
    sub = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "sub", [],
                            [vi("z", TensorProto.FLOAT, [1])])
    sp = helper.make_sparse_tensor(helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]),
                                   helper.make_tensor("i", TensorProto.INT64, [1], [0]), [3])
    attrs = dict(f=0.5, i=3, s="str", t=helper.make_tensor("t", TensorProto.FLOAT, [1], [1.0]),
                 g=sub, floats=[1.0, 2.0], ints=[1, 2, 3], strings=["a", "b"],
                 tensors=[helper.make_tensor("t2", TensorProto.INT64, [1], [1])], graphs=[sub],
                 sp=sp)
    node = helper.make_node("Everything", ["x"], ["y"], name="all_attrs", domain="com.example",
                            **attrs)
    node.attribute.append(helper.make_attribute("tp", vi("q", TensorProto.FLOAT, [1]).type))
    m = model([node], [vi("x", TensorProto.FLOAT, [1])], [vi("y", TensorProto.FLOAT, [1])],
              opsets=(("", 13), ("com.example", 1)))
    out["attrs.onnx"] = m.SerializeToString()

    # If with subgraphs reading an outer-scope value.
    out["if.onnx"] = mc.deep_if(2)

    # Non-tensor types: sequence, map, optional.
    seq = helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, [2])
    mt = onnx.TypeProto()
    mt.map_type.key_type = TensorProto.INT64
    mt.map_type.value_type.CopyFrom(helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    mp = helper.make_value_info("map", mt)
    opt = helper.make_value_info("opt", helper.make_optional_type_proto(
        helper.make_tensor_type_proto(TensorProto.FLOAT, [1])))
    n = [helper.make_node("SequenceLength", ["seq"], ["len"], name="sl")]
    m = model(n, [seq, mp, opt], [vi("len", TensorProto.INT64, [])], opsets=(("", 15),))
    out["types.onnx"] = m.SerializeToString()

    # Local function, training info, unknown fields at several levels.
    f = helper.make_function("com.example", "Twice", ["a"], ["b"],
                             [helper.make_node("Add", ["a", "a"], ["b"])],
                             [helper.make_opsetid("", 13)])
    n = [helper.make_node("Twice", ["x"], ["y"], name="tw", domain="com.example")]
    m = model(n, [vi("x", TensorProto.FLOAT, [2])], [vi("y", TensorProto.FLOAT, [2])],
              opsets=(("", 13), ("com.example", 1)), functions=[f])
    ti = m.training_info.add()
    ti.algorithm.CopyFrom(helper.make_graph([], "algo", [], []))
    data = m.SerializeToString()
    data += mc.f_varint(99, 7) + mc.f_bytes(100, b"future field")  # unknown ModelProto fields
    out["extras.onnx"] = data

    # Unknown fields inside a node and a tensor, via raw bytes.
    nodes, tensors, inputs, outputs, _ = mc.base_parts()
    raw_node = nodes[1].SerializeToString() + mc.f_varint(50, 1)
    raw_init = tensors[3].SerializeToString() + mc.f_bytes(60, b"x")
    g = mc.graph_raw([nodes[0], raw_node] + nodes[2:], tensors[:3] + [raw_init], inputs, outputs)
    out["unknown_fields.onnx"] = mc.model_raw(g)

    # External data (refused by the fuzz target: no directory).
    out["external.onnx"] = mc.ext_model("w.bin", 0, 72).SerializeToString()
    return out


def main(argv):
    outdir = argv[1] if len(argv) > 1 else os.path.join(HERE, "seed")
    os.makedirs(outdir, exist_ok=True)
    total = 0
    for name, data in sorted(seeds().items()):
        onnx.ModelProto().ParseFromString(data)  # every seed is valid protobuf
        with open(os.path.join(outdir, name), "wb") as fh:
            fh.write(data)
        total += len(data)
    assert total < 200 * 1024, total
    print("make_seeds.py: %d seeds, %d bytes in %s" % (len(seeds()), total, outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
