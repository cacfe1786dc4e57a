"""cases_shape.py - gradient-check cases for the shape and data-movement ops (ops/shape_*.c).
Every float32 initializer is a parameter; shapes, axes, indices, pads, ... are int64 initializers
(not parameters) and float inputs that must not be parameters (Resize scales, Dropout ratio,
OneHot values) come from Constant nodes.

Tolerances: these ops only move, sum or linearly interpolate values, so the loss is quadratic in
every parameter and central differences are exact up to float32 rounding of the loss (~1e-7 / eps):
the defaults (eps 1e-2, rtol 2e-2, atol 1e-4) hold with a wide margin for all of them. Every
element of each parameter is checked (--samples 400; the larger cases sample 400 elements). Dropout draws a new mask every run, so finite differences
only see its deterministic settings (ratio 0, ratio 1, a ratio so small that nothing is dropped,
training_mode false); tests/gradcheck/check_dropout_grad.py checks a real mask (forward and
backward agree, dX = dY * mask / (1 - ratio)).
Cases named 'nondiff_*' put a non-differentiable op (Shape-like, generators) next to a parameter:
autodiff must treat its output as a constant."""
# ops: Reshape Flatten Squeeze Unsqueeze Transpose Concat Split Slice Gather GatherElements Expand Tile Pad Resize Upsample Dropout DepthToSpace SpaceToDepth Trilu ReverseSequence ConstantOfShape Size EyeLike Range OneHot
import numpy as np
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.RandomState(31337)  # own stream: cases here do not shift other families' values
ALL = ['--samples', '400']  # every element of these small parameters


def rand(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


def i64(*v):
    return np.array(v, dtype=np.int64)


def const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def net(nodes, inits, opset=13, out=None):
    """A graph of `nodes`; the model output is `out` or the last node's first output; `inits` maps
    initializer names to arrays (float32 ones are the parameters)."""
    out = out or nodes[-1].output[0]
    graph = helper.make_graph(nodes, "gradcheck", [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def one(op, x, extra=(), opset=13, n_out=1, **attrs):
    """One node op(x, *extra): x is the float parameter, extra are (name, array) int initializers or
    Constant-node outputs ((name, None) after a const() node in `pre`), or '' for omitted inputs."""
    inits = {"x": x}
    names = ["x"]
    pre = []
    for e in extra:
        if e == "":
            names.append("")
        elif isinstance(e, tuple) and e[0] == "const":
            pre.append(const(e[1], e[2]))
            names.append(e[1])
        else:
            inits[e[0]] = e[1]
            names.append(e[0])
    outs = [f"y{k}" for k in range(n_out)]
    return net(pre + [helper.make_node(op, names, outs, **attrs)], inits, opset, out="y0")


CASES = {
    "Reshape": [
        ("2d_to_2d", one("Reshape", rand(3, 4), [("s", i64(2, 6))]), ALL),
        ("3d_infer", one("Reshape", rand(2, 3, 4), [("s", i64(4, -1))]), ALL),
        ("copy_zero", one("Reshape", rand(2, 3, 4), [("s", i64(0, -1, 2))]), ALL),
        ("allowzero_14", one("Reshape", rand(2, 6), [("s", i64(3, 4))], opset=14, allowzero=1), ALL),
        ("to_scalar_and_back", net([helper.make_node("Reshape", ["x", "s0"], ["t"]),
                                    helper.make_node("Reshape", ["t", "s1"], ["y"])],
                                   {"x": rand(1, 1), "s0": i64(), "s1": i64(1)}), ALL),
    ],
    "Flatten": [
        ("axis1_4d", one("Flatten", rand(2, 3, 2, 2)), ALL),
        ("axis_neg", one("Flatten", rand(2, 3, 4), axis=-1), ALL),
        ("axis0", one("Flatten", rand(3, 2, 2), axis=0), ALL),
        ("axis_rank", one("Flatten", rand(2, 3), axis=2, opset=11), ALL),
    ],
    "Squeeze": [
        ("axes_input", one("Squeeze", rand(1, 3, 1, 4), [("a", i64(0, -2))]), ALL),
        ("all_ones", one("Squeeze", rand(2, 1, 3, 1)), ALL),
        ("axes_attr_11", one("Squeeze", rand(3, 1, 2), axes=[1], opset=11), ALL),
    ],
    "Unsqueeze": [
        ("axes_input", one("Unsqueeze", rand(3, 4), [("a", i64(0, -1))]), ALL),
        ("middle", one("Unsqueeze", rand(2, 3), [("a", i64(1))]), ALL),
        ("axes_attr_11", one("Unsqueeze", rand(3, 2), axes=[0, 3], opset=11), ALL),
    ],
    "Transpose": [
        ("perm_3d", one("Transpose", rand(2, 3, 4), perm=[2, 0, 1]), ALL),
        ("default_reverse", one("Transpose", rand(2, 3, 4)), ALL),
        ("nchw_nhwc", one("Transpose", rand(2, 3, 4, 5), perm=[0, 2, 3, 1]), ALL),
        ("matrix", one("Transpose", rand(5, 3), perm=[1, 0]), ALL),
    ],
    "Concat": [
        ("two_axis0", net([helper.make_node("Concat", ["a", "b"], ["y"], axis=0)],
                          {"a": rand(2, 3), "b": rand(4, 3)}), ALL),
        ("three_neg_axis", net([helper.make_node("Concat", ["a", "b", "c"], ["y"], axis=-1)],
                               {"a": rand(2, 3, 1), "b": rand(2, 3, 4), "c": rand(2, 3, 2)}), ALL),
        ("with_constant_input", net([const("k", rand(2, 2, 3, 3)),
                                     helper.make_node("Concat", ["a", "k", "b"], ["y"], axis=1)],
                                    {"a": rand(2, 3, 3, 3), "b": rand(2, 1, 3, 3)}), ALL),
        ("same_input_twice", net([helper.make_node("Concat", ["a", "a", "b"], ["y"], axis=1)],
                                 {"a": rand(3, 2), "b": rand(3, 5)}), ALL),
        ("opset11_axis2", net([helper.make_node("Concat", ["a", "b"], ["y"], axis=2)],
                              {"a": rand(2, 2, 3), "b": rand(2, 2, 1)}, opset=11), ALL),
    ],
    "Split": [
        ("sizes_first_only", one("Split", rand(2, 6, 3), [("s", i64(2, 3, 1))], n_out=3, axis=1), ALL),
        ("equal_attr_11", one("Split", rand(4, 6), n_out=2, axis=-1, opset=11), ALL),
        ("split_attr_11", one("Split", rand(7, 2), n_out=3, axis=0, split=[3, 1, 3], opset=11), ALL),
        ("num_outputs_18", one("Split", rand(7, 3), n_out=3, axis=0, num_outputs=3, opset=18), ALL),
        ("all_outputs_used", net([helper.make_node("Split", ["x"], ["p", "q", "r"], axis=1),
                                  helper.make_node("Mul", ["p", "q"], ["pq"]),
                                  helper.make_node("Add", ["pq", "r"], ["y"])],
                                 {"x": rand(3, 6, 2)}), ALL),
        ("middle_unused", net([helper.make_node("Split", ["x", "s"], ["p", "q", "r"], axis=0),
                               helper.make_node("Mul", ["p", "r"], ["y"])],
                              {"x": rand(5, 3), "s": i64(2, 1, 2)}), ALL),
    ],
    "Slice": [
        ("basic", one("Slice", rand(5, 4), [("s", i64(1)), ("e", i64(4))]), ALL),
        ("axes_steps", one("Slice", rand(4, 6, 5), [("s", i64(0, 1)), ("e", i64(9, -1)), ("a", i64(-1, 1)),
                                                    ("t", i64(2, 2))]), ALL),
        ("negative_steps", one("Slice", rand(6, 5), [("s", i64(-1, 4)), ("e", i64(-7, 0)), ("a", i64(0, 1)),
                                                     ("t", i64(-2, -1))]), ALL),
        ("clamped_ends", one("Slice", rand(3, 4, 5), [("s", i64(1, -100)), ("e", i64(2**62, 3)), ("a", i64(2, 1))]), ALL),
        ("attrs_opset9", one("Slice", rand(4, 5), starts=[1, 0], ends=[3, 4], axes=[0, 1], opset=9), ALL),
        ("one_element", one("Slice", rand(4, 3), [("s", i64(2, 1)), ("e", i64(3, 2))]), ALL),
    ],
    "Gather": [
        ("embedding_repeats", one("Gather", rand(10, 4), [("i", i64(3, 1, 3, -1, 0, 3).reshape(2, 3))]), ALL),
        ("axis1_repeats", one("Gather", rand(3, 5, 2), [("i", i64(4, 0, 4, 4, -5))], axis=1), ALL),
        ("axis_neg_scalar", one("Gather", rand(2, 3, 4), [("i", np.array(-2, dtype=np.int64))], axis=-1), ALL),
        ("int32_indices", one("Gather", rand(6, 3), [("i", np.array([[5, 0], [5, 2]], dtype=np.int32))]), ALL),
        ("large_rows", one("Gather", rand(50, 64), [("i", RNG.randint(-50, 50, size=(4, 16)).astype(np.int64))]),
         ALL),
    ],
    "GatherElements": [
        ("axis0_repeats", one("GatherElements", rand(3, 4), [("i", i64(0, 2, 2, 1, 0, 0, 2, -1).reshape(2, 4))]), ALL),
        ("axis1_neg", one("GatherElements", rand(2, 3, 4), [("i", RNG.randint(-4, 4, size=(2, 3, 5)).astype(np.int64))],
                          axis=-1), ALL),
        ("smaller_indices", one("GatherElements", rand(4, 5), [("i", i64(1, 1, 3, 0, 0, 1).reshape(3, 2))], axis=1), ALL),
    ],
    "Expand": [
        ("broadcast_rank_up", one("Expand", rand(3, 1), [("s", i64(2, 3, 4))]), ALL),
        ("vector", one("Expand", rand(1), [("s", i64(5))]), ALL),
        ("same_shape", one("Expand", rand(2, 3), [("s", i64(2, 1))]), ALL),
        ("middle", one("Expand", rand(2, 1, 3), [("s", i64(2, 4, 3))]), ALL),
    ],
    "Tile": [
        ("2d", one("Tile", rand(2, 3), [("r", i64(2, 3))]), ALL),
        ("3d_mixed", one("Tile", rand(2, 1, 3), [("r", i64(1, 4, 2))]), ALL),
        ("ones", one("Tile", rand(3, 2), [("r", i64(1, 1))]), ALL),
        ("1d", one("Tile", rand(4), [("r", i64(3))]), ALL),
    ],
    "Pad": [
        ("constant", one("Pad", rand(3, 4), [("p", i64(1, 0, 2, 1))]), ALL),
        ("constant_value", net([const("v", np.array(0.5, dtype=np.float32)),
                                helper.make_node("Pad", ["x", "p", "v"], ["y"])],
                               {"x": rand(2, 3, 2), "p": i64(0, 1, 1, 1, 0, 2)}), ALL),
        ("negative_crop", one("Pad", rand(4, 5), [("p", i64(-1, 2, 1, -2))]), ALL),
        ("reflect", one("Pad", rand(2, 4, 5), [("p", i64(0, 2, 3, 0, 3, 4))], mode="reflect"), ALL),
        ("edge", one("Pad", rand(1, 3, 4), [("p", i64(0, 2, 1, 0, 3, 2))], mode="edge"), ALL),
        ("wrap_19", one("Pad", rand(3, 4), [("p", i64(2, 5, 1, 3))], mode="wrap", opset=19), ALL),
        ("axes_18", one("Pad", rand(2, 3, 4), [("p", i64(1, 2, 2, 1)), "", ("a", i64(-1, 1))], mode="reflect",
                        opset=18), ALL),
        ("attr_opset10", one("Pad", rand(3, 3), pads=[1, 1, 0, 2], mode="edge", opset=10), ALL),
        ("edge_large", one("Pad", rand(2, 8, 16, 16), [("p", i64(0, 0, 2, 3, 0, 0, 1, 2))], mode="edge"),
         ALL),
    ],
    "Resize": [
        ("nearest_up2", one("Resize", rand(1, 2, 3, 4), ["", ("const", "sc", np.array([1, 1, 2, 2], np.float32))],
                            mode="nearest"), ALL),
        ("nearest_down_floor", one("Resize", rand(2, 1, 6, 7), ["", ("const", "sc", np.array([1, 1, 0.5, 0.6], np.float32))],
                                   mode="nearest", nearest_mode="floor", coordinate_transformation_mode="asymmetric"), ALL),
        ("linear_half_pixel", one("Resize", rand(1, 2, 3, 4), ["", ("const", "sc", np.array([1, 1, 2, 1.5], np.float32))],
                                  mode="linear"), ALL),
        ("linear_align_sizes", one("Resize", rand(2, 1, 4, 3), ["", "", ("sz", i64(2, 1, 7, 5))], mode="linear",
                                   coordinate_transformation_mode="align_corners"), ALL),
        ("linear_pytorch_down", one("Resize", rand(1, 3, 7, 6), ["", ("const", "sc", np.array([1, 1, 0.5, 0.5], np.float32))],
                                    mode="linear", coordinate_transformation_mode="pytorch_half_pixel"), ALL),
        ("cubic", one("Resize", rand(1, 1, 4, 5), ["", ("const", "sc", np.array([1, 1, 1.5, 2], np.float32))],
                      mode="cubic"), ALL),
        ("cubic_exclude", one("Resize", rand(1, 2, 5, 4), ["", "", ("sz", i64(1, 2, 8, 7))], mode="cubic",
                              exclude_outside=1, cubic_coeff_a=-0.5), ALL),
        ("linear_1d_3d", one("Resize", rand(2, 3, 5), ["", ("const", "sc", np.array([1, 1, 1.6], np.float32))],
                             mode="linear"), ALL),
        ("crop_and_resize", one("Resize", rand(1, 1, 5, 5), [("const", "roi", np.array([0, 0, 0.2, 0.1, 1, 1, 0.9, 1.2], np.float32)),
                                                              "", ("sz", i64(1, 1, 4, 6))],
                                mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                                extrapolation_value=0.3), ALL),
        ("axes_18", one("Resize", rand(1, 2, 4, 4), ["", ("const", "sc", np.array([2.5, 1.5], np.float32))],
                        mode="linear", axes=[3, -2], opset=18), ALL),
        ("opset10_nearest", one("Resize", rand(1, 1, 3, 3), [("const", "sc", np.array([1, 1, 2, 3], np.float32))],
                                mode="nearest", opset=10), ALL),
        ("linear_large", one("Resize", rand(2, 4, 16, 16), ["", ("const", "sc", np.array([1, 1, 2, 2], np.float32))],
                             mode="linear"), ALL),
    ],
    "Upsample": [
        ("nearest_9", one("Upsample", rand(1, 2, 2, 3), [("const", "sc", np.array([1, 1, 2, 2], np.float32))], opset=9), ALL),
        ("linear_9", one("Upsample", rand(1, 1, 3, 3), [("const", "sc", np.array([1, 1, 2, 1.5], np.float32))],
                         mode="linear", opset=9), ALL),
    ],
    "Dropout": [
        ("ratio0_13", one("Dropout", rand(3, 4), [("const", "r", np.array(0.0, np.float32))]), ALL),
        ("ratio1_13", net([const("r", np.array(1.0, np.float32)), helper.make_node("Dropout", ["x", "r"], ["d"]),
                           helper.make_node("Add", ["d", "x"], ["y"])], {"x": rand(3, 4)}), ALL),
        ("tiny_ratio_mask_out", one("Dropout", rand(2, 5), [("const", "r", np.array(2.0 ** -40, np.float32))], n_out=2),
         ALL),
        ("tiny_ratio_added_mask", one("Dropout", rand(4, 3), [("const", "r", np.array(2.0 ** -40, np.float32))]), ALL),
        ("attr_ratio0_10", one("Dropout", rand(3, 3), ratio=0.0, opset=10), ALL),
        ("float_mask_7", net([helper.make_node("Dropout", ["x"], ["y", "m"], ratio=0.0)], {"x": rand(2, 3)}, opset=9),
         ALL),
        ("chain_two_params", net([const("r", np.array(0.0, np.float32)), helper.make_node("Mul", ["x", "w"], ["t"]),
                                  helper.make_node("Dropout", ["t", "r"], ["d"]),
                                  helper.make_node("Mul", ["d", "t"], ["y"])],
                                 {"x": rand(3, 2), "w": rand(3, 2)}), ALL),
    ],
    "DepthToSpace": [
        ("dcr", one("DepthToSpace", rand(1, 8, 2, 3), blocksize=2), ALL),
        ("crd", one("DepthToSpace", rand(2, 8, 2, 2), blocksize=2, mode="CRD"), ALL),
        ("dcr_b3", one("DepthToSpace", rand(1, 9, 2, 1), blocksize=3), ALL),
    ],
    "SpaceToDepth": [
        ("b2", one("SpaceToDepth", rand(1, 2, 4, 6), blocksize=2), ALL),
        ("b3", one("SpaceToDepth", rand(2, 1, 3, 6), blocksize=3), ALL),
    ],
    "Trilu": [
        ("upper", one("Trilu", rand(4, 5), opset=14), ALL),
        ("lower_k", one("Trilu", rand(2, 4, 3), [("k", np.array(1, np.int64))], upper=0, opset=14), ALL),
        ("upper_neg_k", one("Trilu", rand(5, 4), [("k", np.array(-2, np.int64))], opset=14), ALL),
    ],
    "ReverseSequence": [
        ("time_major", one("ReverseSequence", rand(4, 3, 2), [("l", i64(4, 1, 3))]), ALL),
        ("batch_major", one("ReverseSequence", rand(2, 5, 3), [("l", i64(2, 5))], batch_axis=0, time_axis=1), ALL),
    ],
    "ConstantOfShape": [
        ("nondiff_shape_of_param", net([helper.make_node("Shape", ["x"], ["s"]),
                                        helper.make_node("ConstantOfShape", ["s"], ["c"],
                                                         value=numpy_helper.from_array(np.array([2.0], np.float32))),
                                        helper.make_node("Mul", ["x", "c"], ["y"])], {"x": rand(3, 4)}), ALL),
    ],
    "Size": [
        ("nondiff_scale", net([helper.make_node("Size", ["x"], ["n"]),
                               helper.make_node("Cast", ["n"], ["f"], to=TensorProto.FLOAT),
                               helper.make_node("Mul", ["x", "f"], ["y"])], {"x": rand(2, 3)}), ALL),
    ],
    "EyeLike": [
        ("nondiff_add", net([helper.make_node("EyeLike", ["x"], ["e"]), helper.make_node("Add", ["x", "e"], ["t"]),
                             helper.make_node("Mul", ["t", "x"], ["y"])], {"x": rand(3, 4)}), ALL),
    ],
    "Range": [
        ("nondiff_scale", net([helper.make_node("Shape", ["x"], ["s"]),
                               helper.make_node("Gather", ["s", "one"], ["n"], axis=0),
                               helper.make_node("Range", ["zero", "n", "one"], ["r"]),
                               helper.make_node("Cast", ["r"], ["f"], to=TensorProto.FLOAT),
                               helper.make_node("Mul", ["x", "f"], ["y"])],
                              {"x": rand(2, 4), "zero": np.array(0, np.int64), "one": np.array(1, np.int64)}), ALL),
    ],
    "OneHot": [
        ("nondiff_mask", net([const("v", np.array([0.5, 2.0], np.float32)),
                              helper.make_node("OneHot", ["i", "d", "v"], ["h"], axis=-1),
                              helper.make_node("Mul", ["x", "h"], ["y"])],
                             {"x": rand(3, 4), "i": i64(0, 3, -1), "d": np.array(4, np.int64)}), ALL),
    ],
}
