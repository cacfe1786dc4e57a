"""cases_elementwise.py - gradient-check cases for element-wise math and activations
(ops/elementwise*.c, ops/unary.c, ops/activation*.c). Every float32 initializer is a parameter.

Tolerances: the loss is float32 (~6e-8 relative), so central differences with step h carry
~3e-8 / h of noise: smooth functions use the default eps 1e-2 (rtol 2e-2, atol 1e-4); functions
with kinks (Relu, Abs, Clip, Max, ...) use eps 1e-3 and inputs kept at least 0.05 away from every
kink, so that no perturbation crosses one (or eps 1e-2 with a margin of 0.2 where the loss
is large). Tensors of >= 1024 float32 elements run the backward
on oneDNN eltwise, smaller ones on the C loops; cases of both sizes. Cases named 'mask_*' put a
non-differentiable op (comparison, logic, Cast to/from bool/int) on a path from a parameter:
autodiff must skip it and the gradient must still be right.
Bounds of Clip and other non-differentiable float inputs come from Constant nodes, since
initializers would count as parameters."""
# ops: Add Sub Mul Div Pow Sqrt Neg Abs Exp Log Reciprocal Erf Gelu GeluMs Relu LeakyRelu PRelu Elu Selu Celu Sigmoid HardSigmoid HardSwish Tanh Softplus Softsign Mish ThresholdedRelu Shrink Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh Clip Where Cast Max Min Sum Mean Equal Less Greater Not And Or Floor
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from gc_common import model

KINK = ['--eps', '1e-3']
RNG = np.random.RandomState(20260)  # own stream: cases here do not shift other families' values


def rand(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


def away(*shape, lo=-1.0, hi=1.0, kinks=(0.0,), margin=0.05):
    """Uniform values in [lo, hi] at least `margin` away from each kink."""
    x = RNG.uniform(lo, hi, size=shape)
    for k in kinks:
        near = np.abs(x - k) < margin
        x[near] = k + np.where(x[near] >= k, margin, -margin) * (1.5 + RNG.uniform(0, 1, size=near.sum()))
    return x.astype(np.float32)


def mag(*shape, lo=0.5, hi=2.0, signed=True):
    """Magnitudes in [lo, hi], random signs when `signed`."""
    x = RNG.uniform(lo, hi, size=shape)
    if signed:
        x *= RNG.choice([-1.0, 1.0], size=shape)
    return x.astype(np.float32)


def const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def net(nodes, inits, opset=13, domains=()):
    """A graph of `nodes` whose last node's first output is the model output; `inits` maps
    initializer names to arrays."""
    out = nodes[-1].output[0]
    graph = helper.make_graph(nodes, "gradcheck", [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=imports)


def node(op, ins, out="out", domain="", **attrs):
    return helper.make_node(op, ins, [out], domain=domain, **attrs)


def conv_chain(*mid, opset=14, extra=None):
    """x -> Conv(w1) -> a -> `mid` nodes (reading a, writing r) -> Conv(w2) -> out, 16 channels:
    the activations see oneDNN blocked layouts in both directions (dY from ConvGradData)."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]), *mid,
             helper.make_node("Conv", ["r", "w2"], ["out"], pads=[1, 1, 1, 1])]
    inits = {"x": rand(2, 16, 5, 5), "w1": rand(16, 16, 3, 3) * 0.3, "w2": rand(16, 16, 3, 3) * 0.1}
    inits.update(extra or {})
    return net(nodes, inits, opset=opset)


CASES = {
    # ---------------------------------------------------------------- binary arithmetic
    "Add": [
        ("conv_residual", conv_chain(node("Add", ["a", "x"], "s"), node("Relu", ["s"], "r")), KINK),
        ("same", model("Add", [rand(3, 4), rand(3, 4)]), []),
        ("bcast_vec", model("Add", [rand(2, 3, 5), rand(5)]), []),
        ("bcast_both", model("Add", [rand(3, 1, 5), rand(4, 1)]), []),
        ("scalar", model("Add", [rand(2, 3), np.array(0.5, np.float32)]), []),
        ("large", model("Add", [rand(8, 160), rand(160)]), []),
        ("x_plus_x", net([node("Add", ["a", "a"])], {"a": rand(3, 4)}), []),
    ],
    "Sub": [
        ("same", model("Sub", [rand(3, 4), rand(3, 4)]), []),
        ("bcast", model("Sub", [rand(4, 1), rand(2, 1, 3)]), []),
        ("scalar_first", model("Sub", [np.array([1.5], np.float32), rand(2, 5)]), []),
    ],
    "Mul": [
        ("conv_gate", conv_chain(node("Sigmoid", ["g"], "gs"), node("Mul", ["a", "gs"], "r"),
                                 extra={"g": rand(16, 1, 1)}), []),
        ("same", model("Mul", [rand(3, 4), rand(3, 4)]), []),
        ("bcast", model("Mul", [rand(2, 3, 4), rand(3, 1)]), []),
        ("bcast_both", model("Mul", [rand(3, 1), rand(1, 5)]), []),
        ("scalar", model("Mul", [rand(4, 5), np.array(-1.3, np.float32)]), []),
        ("large", model("Mul", [rand(6, 200), rand(6, 1)]), []),
        ("square", net([node("Mul", ["a", "a"])], {"a": rand(2, 6)}), []),
    ],
    "Div": [
        ("same", model("Div", [rand(3, 4), mag(3, 4)]), []),
        ("bcast", model("Div", [rand(2, 3, 4), mag(4)]), []),
        ("bcast_num", model("Div", [rand(3, 1), mag(2, 3, 5)]), []),
        ("scalar_den", model("Div", [rand(5, 2), np.array(0.7, np.float32)]), []),
        ("x_over_x_plus", net([node("Add", ["a", "b"], "s"), node("Div", ["a", "s"])],
                              {"a": mag(3, 4, lo=1.0, hi=2.0, signed=False), "b": mag(3, 4, signed=False)}), []),
    ],
    "Pow": [
        ("same", model("Pow", [mag(3, 4, signed=False), rand(3, 4, lo=-2, hi=3)]), []),
        ("bcast_exp", model("Pow", [mag(2, 3, 4, signed=False), rand(4, lo=-1, hi=2)]), []),
        ("bcast_base", model("Pow", [mag(4, 1, signed=False), rand(3, 1, 5, lo=0, hi=2)]), []),
        ("square", net([const("e", np.float32(2.0)), node("Pow", ["a", "e"])], {"a": rand(4, 5)}), []),
        ("cube_large", net([const("e", np.float32(3.0)), node("Pow", ["a", "e"])], {"a": rand(5, 250)}), []),
        ("int_exp_neg_base", net([const("e", np.array([3], np.int64)), node("Pow", ["a", "e"])],
                                 {"a": mag(3, 4)}), []),
        ("exp_param", model("Pow", [mag(3, 3, signed=False), np.array(1.7, np.float32)]), []),
    ],
    "Max": [
        ("two", model("Max", [away(3, 4), away(3, 4)]), KINK),
        ("bcast", model("Max", [away(2, 3, 4), away(4)]), KINK),
        ("three", model("Max", [rand(3, 5), rand(1, 5), rand(3, 1)]), KINK),
        ("one", model("Max", [rand(2, 3)]), []),
        ("tie", net([node("Max", ["a", "b"])], {"a": np.array([0.5, -0.25, 1.0, 0.75], np.float32),
                                                "b": np.array([0.5, 0.3, 1.0, -0.2], np.float32)}), KINK),
    ],
    "Min": [
        ("two", model("Min", [rand(3, 4), rand(3, 4)]), KINK),
        ("bcast", model("Min", [rand(2, 1, 4), rand(3, 1)]), KINK),
        ("four", model("Min", [rand(2, 3), rand(2, 3), rand(3), rand(2, 1)]), KINK),
    ],
    "Sum": [
        ("one", model("Sum", [rand(3, 4)]), []),
        ("two", model("Sum", [rand(3, 4), rand(3, 4)]), []),
        ("three_bcast", model("Sum", [rand(2, 3, 4), rand(4), rand(3, 1)]), []),
    ],
    "Mean": [
        ("one", model("Mean", [rand(3, 4)]), []),
        ("two_bcast", model("Mean", [rand(3, 4), rand(1, 4)]), []),
        ("three", model("Mean", [rand(2, 5), rand(2, 5), rand(5)]), []),
    ],
    # ---------------------------------------------------------------- unary math
    "Sqrt": [
        ("small", model("Sqrt", [mag(3, 4, signed=False)]), []),
        ("large", model("Sqrt", [mag(4, 300, signed=False)]), []),
    ],
    "Neg": [("small", model("Neg", [rand(3, 4)]), []), ("large", model("Neg", [rand(2, 600)]), [])],
    "Abs": [
        ("small", model("Abs", [away(3, 4)]), KINK),
        ("large", model("Abs", [away(4, 300)]), KINK),
    ],
    "Exp": [("small", model("Exp", [rand(3, 4)]), []), ("large", model("Exp", [rand(3, 400)]), [])],
    "Log": [("small", model("Log", [mag(3, 4, signed=False)]), []),
            ("large", model("Log", [mag(2, 600, signed=False)]), [])],
    "Reciprocal": [("small", model("Reciprocal", [mag(3, 4)]), []),
                   ("large", model("Reciprocal", [mag(5, 250)]), [])],
    "Erf": [("small", model("Erf", [rand(3, 4, lo=-2, hi=2)]), []),
            ("large", model("Erf", [rand(4, 300, lo=-2, hi=2)]), [])],
    "Sin": [("small", model("Sin", [rand(3, 4, lo=-3, hi=3)]), [])],
    "Cos": [("small", model("Cos", [rand(3, 4, lo=-3, hi=3)]), [])],
    "Tan": [("small", model("Tan", [rand(3, 4)]), [])],
    "Asin": [("small", model("Asin", [rand(3, 4, lo=-0.8, hi=0.8)]), [])],
    "Acos": [("small", model("Acos", [rand(3, 4, lo=-0.8, hi=0.8)]), [])],
    "Atan": [("small", model("Atan", [rand(3, 4, lo=-2, hi=2)]), [])],
    "Sinh": [("small", model("Sinh", [rand(3, 4)]), [])],
    "Cosh": [("small", model("Cosh", [rand(3, 4)]), [])],
    "Asinh": [("small", model("Asinh", [rand(3, 4, lo=-2, hi=2)]), [])],
    "Acosh": [("small", model("Acosh", [rand(3, 4, lo=1.5, hi=3)]), [])],
    "Atanh": [("small", model("Atanh", [rand(3, 4, lo=-0.8, hi=0.8)]), [])],
    # ---------------------------------------------------------------- activations
    "Relu": [
        ("conv_chain", conv_chain(node("Relu", ["a"], "r")), KINK),
        ("small", model("Relu", [away(3, 4)]), KINK),
        ("large", model("Relu", [away(4, 300)]), KINK),
        ("4d", model("Relu", [away(2, 3, 4, 5)]), KINK),
    ],
    "LeakyRelu": [
        ("conv_chain", conv_chain(node("LeakyRelu", ["a"], "r", alpha=0.1)), KINK),
        ("default", model("LeakyRelu", [away(3, 4)]), KINK),
        ("alpha", model("LeakyRelu", [away(4, 300)], {"alpha": 0.2}), KINK),
        ("neg_alpha", model("LeakyRelu", [away(3, 5)], {"alpha": -0.3}), KINK),
    ],
    "PRelu": [
        ("conv_chain", conv_chain(node("PRelu", ["a", "s"], "r"), extra={"s": rand(16, 1, 1)}), KINK),
        ("channel", model("PRelu", [away(2, 3, 4, 4), rand(3, 1, 1)]), KINK),
        ("scalar_slope", model("PRelu", [away(3, 5), rand(1)]), KINK),
        ("full_slope", model("PRelu", [away(2, 4), rand(2, 4)]), KINK),
        ("row_slope", model("PRelu", [away(3, 4, 5), rand(5)]), KINK),
        ("large", model("PRelu", [away(2, 16, 8, 8), rand(16, 1, 1)]), KINK),
    ],
    "Elu": [
        ("conv_chain", conv_chain(node("Elu", ["a"], "r")), KINK),
        ("default", model("Elu", [away(3, 4)]), KINK),
        ("alpha_large", model("Elu", [away(4, 300)], {"alpha": 0.5}), KINK),
        ("neg_alpha", model("Elu", [away(3, 4)], {"alpha": -0.5}), KINK),
    ],
    "Selu": [
        ("default", model("Selu", [away(3, 4)]), KINK),
        ("attrs", model("Selu", [away(3, 5)], {"alpha": 1.2, "gamma": 0.8}), KINK),
    ],
    "Celu": [
        ("default", model("Celu", [away(3, 4)], opset=13), KINK),
        ("alpha", model("Celu", [away(3, 4)], {"alpha": 2.0}, opset=13), KINK),
    ],
    "Sigmoid": [
        ("conv_chain", conv_chain(node("Sigmoid", ["a"], "r")), []),
        ("small", model("Sigmoid", [rand(3, 4, lo=-4, hi=4)]), []),
        ("large", model("Sigmoid", [rand(4, 300, lo=-4, hi=4)]), []),
    ],
    "HardSigmoid": [
        ("default", model("HardSigmoid", [away(3, 8, lo=-4, hi=4, kinks=(-2.5, 2.5))]), KINK),
        ("attrs", model("HardSigmoid", [away(4, 300, lo=-3, hi=3, kinks=(-0.6, 1.4))],
                        {"alpha": 0.5, "beta": 0.3}), KINK),
    ],
    "HardSwish": [
        ("conv_chain", conv_chain(node("HardSwish", ["a"], "r")), KINK),
        ("small", model("HardSwish", [away(3, 8, lo=-4.5, hi=4.5, kinks=(-3.0, 3.0), margin=0.2)], opset=14), []),
        ("large", model("HardSwish", [away(4, 300, lo=-4.5, hi=4.5, kinks=(-3.0, 3.0), margin=0.2)], opset=14), []),
    ],
    "Tanh": [
        ("conv_chain", conv_chain(node("Tanh", ["a"], "r")), []),
        ("small", model("Tanh", [rand(3, 4, lo=-2, hi=2)]), []),
        ("large", model("Tanh", [rand(4, 300, lo=-2, hi=2)]), []),
    ],
    "Gelu": [
        ("conv_chain", conv_chain(node("Gelu", ["a"], "r"), opset=20), []),
        ("erf", model("Gelu", [rand(3, 4, lo=-3, hi=3)], opset=20), []),
        ("erf_large", model("Gelu", [rand(4, 300, lo=-3, hi=3)], opset=20), []),
        ("tanh", model("Gelu", [rand(3, 4, lo=-3, hi=3)], {"approximate": "tanh"}, opset=20), []),
        ("tanh_large", model("Gelu", [rand(4, 300, lo=-3, hi=3)], {"approximate": "tanh"}, opset=20), []),
    ],
    "GeluMs": [
        ("small", model("Gelu", [rand(3, 4, lo=-3, hi=3)], domain="com.microsoft"), []),
        ("large", model("Gelu", [rand(4, 300, lo=-3, hi=3)], domain="com.microsoft"), []),
    ],
    "Softplus": [
        ("small", model("Softplus", [rand(3, 4, lo=-4, hi=4)]), []),
        ("large", model("Softplus", [rand(4, 300, lo=-4, hi=4)]), []),
    ],
    "Softsign": [("small", model("Softsign", [away(3, 4, lo=-3, hi=3)]), [])],
    "Mish": [("small", model("Mish", [rand(3, 4, lo=-3, hi=3)], opset=18), [])],
    "ThresholdedRelu": [
        ("default", model("ThresholdedRelu", [away(3, 4, lo=-2, hi=3, kinks=(1.0,))], opset=10), KINK),
        ("neg_alpha", model("ThresholdedRelu", [away(3, 4, kinks=(-0.5,))], {"alpha": -0.5}, opset=10), KINK),
    ],
    "Shrink": [
        ("default", model("Shrink", [away(3, 4, lo=-2, hi=2, kinks=(-0.5, 0.5))], opset=9), KINK),
        ("bias", model("Shrink", [away(3, 4, lo=-2, hi=2, kinks=(-1.0, 1.0))], {"lambd": 1.0, "bias": 0.3},
                       opset=9), KINK),
    ],
    "Clip": [
        ("conv_chain", conv_chain(const("lo", np.float32(-1.5)), const("hi", np.float32(1.2)),
                                  node("Clip", ["a", "lo", "hi"], "r")), KINK),
        ("inputs", net([const("lo", np.float32(-0.5)), const("hi", np.float32(0.6)),
                        node("Clip", ["x", "lo", "hi"])], {"x": away(3, 8, kinks=(-0.5, 0.6))}), KINK),
        ("min_only", net([const("lo", np.float32(0.1)), node("Clip", ["x", "lo"])],
                         {"x": away(3, 5, kinks=(0.1,))}), KINK),
        ("max_only", net([const("hi", np.float32(0.2)), node("Clip", ["x", "", "hi"])],
                         {"x": away(4, 300, kinks=(0.2,))}), KINK),
        ("none", net([node("Clip", ["x"])], {"x": rand(3, 4)}), []),
        ("relu6_large", net([const("lo", np.float32(0.0)), const("hi", np.float32(6.0)),
                             node("Clip", ["x", "lo", "hi"])], {"x": away(4, 300, lo=-2, hi=7, kinks=(0.0, 6.0), margin=0.2)}),
         []),
        ("attrs_opset10", model("Clip", [away(3, 4, kinks=(-0.3, 0.4))], {"min": -0.3, "max": 0.4}, opset=10), KINK),
    ],
    # ---------------------------------------------------------------- selection and casts
    "Where": [
        ("same", model("Where", [RNG.rand(3, 4) > 0.5, rand(3, 4), rand(3, 4)]), []),
        ("bcast", model("Where", [RNG.rand(3, 1) > 0.5, rand(4), rand(2, 3, 4)]), []),
        ("scalar_y", model("Where", [RNG.rand(2, 5) > 0.5, rand(2, 5), np.array(0.25, np.float32)]), []),
        ("cond_bcast", model("Where", [RNG.rand(5) > 0.5, rand(3, 5), rand(3, 5)]), []),
    ],
    "Cast": [
        ("f32_f64_f32", net([node("Cast", ["x"], "d", to=TensorProto.DOUBLE), node("Sigmoid", ["d"], "s"),
                             node("Cast", ["s"], to=TensorProto.FLOAT)], {"x": rand(3, 4, lo=-3, hi=3)}), []),
        ("f32_f16_f32", net([node("Cast", ["x"], "h", to=TensorProto.FLOAT16), node("Cast", ["h"], to=TensorProto.FLOAT)],
                            {"x": rand(3, 4)}), ['--eps', '5e-2']),
        ("via_int", net([node("Mul", ["y", "ten"], "y10"), node("Cast", ["y10"], "i", to=TensorProto.INT64),
                         node("Cast", ["i"], "f", to=TensorProto.FLOAT), node("Add", ["x", "f"], "s"),
                         node("Mul", ["s", "y"])],
                        {"x": rand(3, 4), "y": ((RNG.randint(-3, 3, size=(3, 4)) + 0.5) / 10).astype(np.float32),
                         "ten": np.array(10.0, np.float32)}), KINK),
        ("mask_bool", net([const("z", np.float32(0.0)), node("Greater", ["x", "z"], "m"),
                           node("Cast", ["m"], "mf", to=TensorProto.FLOAT), node("Mul", ["x", "mf"])],
                          {"x": away(3, 4)}), KINK),
    ],
    # ---------------------------------------------------------------- non-differentiable on the path
    "Equal": [
        ("mask", net([node("Equal", ["x", "x"], "m"), node("Where", ["m", "x", "y"])],
                     {"x": rand(3, 4), "y": rand(3, 4)}), []),
        ("mask_round", net([node("Round", ["x"], "r"), node("Equal", ["r", "one"], "m"), node("Where", ["m", "x", "y"])],
                           {"x": away(3, 4, lo=-2, hi=2, kinks=(-1.5, -0.5, 0.5, 1.5)), "y": rand(3, 4),
                            "one": np.array(1.0, np.float32)}), KINK),
    ],
    "Less": [
        ("mask", net([node("Less", ["x", "t"], "m"), node("Cast", ["m"], "mf", to=TensorProto.FLOAT),
                      node("Mul", ["mf", "x"], "p"), node("Add", ["p", "x"])],
                     {"x": away(3, 4, kinks=(0.2,)), "t": np.array(0.2, np.float32)}), KINK),
    ],
    "Greater": [
        ("mask", net([node("Greater", ["x", "y"], "m"), node("Where", ["m", "x", "y"])],
                     {"x": away(3, 4), "y": np.zeros((3, 4), np.float32) + 0.0}), KINK),
    ],
    "Not": [
        ("mask", net([const("z", np.float32(0.0)), node("Greater", ["x", "z"], "m"), node("Not", ["m"], "n"),
                      node("Where", ["n", "x", "y"])], {"x": away(3, 4), "y": rand(3, 4)}), KINK),
    ],
    "And": [
        ("mask", net([const("lo", np.float32(-0.5)), const("hi", np.float32(0.5)), node("Greater", ["x", "lo"], "a"),
                      node("Less", ["x", "hi"], "b"), node("And", ["a", "b"], "m"),
                      node("Cast", ["m"], "mf", to=TensorProto.FLOAT), node("Mul", ["x", "mf"])],
                     {"x": away(3, 4, kinks=(-0.5, 0.5))}), KINK),
    ],
    "Or": [
        ("mask", net([const("lo", np.float32(-0.5)), const("hi", np.float32(0.5)), node("Less", ["x", "lo"], "a"),
                      node("Greater", ["x", "hi"], "b"), node("Or", ["a", "b"], "m"),
                      node("Where", ["m", "x", "y"])], {"x": away(3, 4, kinks=(-0.5, 0.5)), "y": rand(3, 4)}), KINK),
    ],
    "Floor": [
        ("zero_path", net([node("Floor", ["x"], "f"), node("Mul", ["f", "x"])],
                          {"x": away(3, 4, lo=-2, hi=2, kinks=(-2.0, -1.0, 0.0, 1.0, 2.0))}), KINK),
    ],
}
