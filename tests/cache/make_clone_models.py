"""Models for tests/cache/test_clone.c (otl_model_clone, subgraph-aware reads). Run once:
python3 make_clone_models.py DIR  ->  DIR/clone_sub.onnx, DIR/clone_ext.onnx (+ clone_ext.onnx.data).

clone_sub.onnx: If (both branches) and Loop bodies reading outer-scope tensors, the initializer
'only_in_if' read only inside the If's then-branch, 'bn_mean_out' (a BatchNormalization running-mean
output) read only inside the Loop body, every attribute kind, a string initializer, doc strings,
metadata, dim_param/denotation, two opset domains, a FunctionProto and a TrainingInfoProto.
clone_ext.onnx: initializers in an external data file."""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

f32 = TensorProto.FLOAT
only_in_if = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "only_in_if")
scale = numpy_helper.from_array(np.full((4,), 2.0, np.float32), "bn_scale")
bias = numpy_helper.from_array(np.zeros((4,), np.float32), "bn_bias")
mean = numpy_helper.from_array(np.zeros((4,), np.float32), "bn_mean")
var = numpy_helper.from_array(np.ones((4,), np.float32), "bn_var")
cond = numpy_helper.from_array(np.array(True), "cond")
trip = numpy_helper.from_array(np.array(2, np.int64), "trip")
names = helper.make_tensor("names", TensorProto.STRING, [2], [b"alpha", b"beta"])
names.doc_string = "a string initializer"

then_g = helper.make_graph([helper.make_node("Add", ["x", "only_in_if"], ["t_out"], name="then_add")], "then",
                           [], [helper.make_tensor_value_info("t_out", f32, ["N", 4])])
else_g = helper.make_graph([helper.make_node("Identity", ["x"], ["e_out"], name="else_id")], "else",
                           [], [helper.make_tensor_value_info("e_out", f32, ["N", 4])])
body = helper.make_graph(
    [helper.make_node("Add", ["acc_in", "bn_mean_out"], ["acc_out"], name="body_add"),
     helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body_cond")],
    "body",
    [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
     helper.make_tensor_value_info("acc_in", f32, [4])],
    [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("acc_out", f32, [4])])

nodes = [
    helper.make_node("BatchNormalization", ["x", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn", "bn_mean_out", "bn_var_out"],
                     name="bn", epsilon=1e-5, momentum=0.9, training_mode=1),
    helper.make_node("If", ["cond"], ["if_out"], name="if", then_branch=then_g, else_branch=else_g, doc_string="branches"),
    helper.make_node("Loop", ["trip", "cond", "bn_bias"], ["loop_out"], name="loop", body=body),
    helper.make_node("Add", ["bn", "if_out"], ["y"], name="add"),
    helper.make_node("Custom", ["y"], ["z"], name="custom", domain="com.example", f=1.5, i=-3, s=b"str", t=numpy_helper.from_array(np.ones((2,), np.int64), "tattr"),
                     floats=[0.5, 1.5], ints=[1, 2, 3], strings=[b"a", b"bc"],
                     tensors=[numpy_helper.from_array(np.zeros((1,), np.float32), "ta")], graphs=[else_g]),
]
x = helper.make_tensor_value_info("x", f32, ["N", 4])
x.type.denotation = "TENSOR"
x.type.tensor_type.shape.dim[0].denotation = "DATA_BATCH"
x.doc_string = "the data"
g = helper.make_graph(nodes, "clone_sub", [x],
                      [helper.make_tensor_value_info("z", f32, ["N", 4]), helper.make_tensor_value_info("loop_out", f32, [4])],
                      [only_in_if, scale, bias, mean, var, cond, trip, names],
                      doc_string="graph doc", value_info=[helper.make_tensor_value_info("y", f32, ["N", 4])])
fn = helper.make_function("com.example", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                          [helper.make_opsetid("", 15)])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 15), helper.make_opsetid("com.example", 1)],
                      producer_name="make_clone_models", producer_version="1", doc_string="model doc", model_version=7,
                      functions=[fn])
ti = m.training_info.add()
ti.initialization.CopyFrom(helper.make_graph([], "init", [], []))
helper.set_model_props(m, {"onnx_tl.labels": "a\nb", "author": "tests/cache"})
onnx.save(m, os.path.join(out, "clone_sub.onnx"))

w = numpy_helper.from_array(np.linspace(-1, 1, 64, dtype=np.float32).reshape(16, 4), "w")
b = numpy_helper.from_array(np.linspace(0, 1, 16, dtype=np.float32), "b")
ge = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="gemm")],
                       "clone_ext", [helper.make_tensor_value_info("x", f32, ["N", 4])],
                       [helper.make_tensor_value_info("y", f32, ["N", 16])], [w, b])
me = helper.make_model(ge, opset_imports=[helper.make_opsetid("", 13)])
onnx.save(me, os.path.join(out, "clone_ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
          location="clone_ext.onnx.data", size_threshold=0)
print("wrote", out)
