"""cases_linalg.py - gradient-check cases for matrix products, normalization, softmax and
reductions (ops/matmul.c, ops/layernorm.c, ops/softmax.c, ops/reduce.c). Every float32
initializer is a parameter; 'f64_*' cases Cast them to double first (the C kernels).

Tolerances (rtol 2e-2, atol 1e-4, eps 1e-2 unless listed): the loss is float32, so central
differences with step h carry ~3e-8 / h of noise.
  MatMul, Gemm, LayerNormalization, ReduceSum/Mean/L2/SumSquare/LogSum/LogSumExp/Prod: default
    (products are bilinear: their differences are exact up to rounding).
  Softmax: atol 5e-6 (outputs and gradients ~1/C).
  LogSoftmax: eps 5e-3, outputs centred by ~log C; atol 1e-3 on the oneDNN path (see there).
  ReduceMax/Min/L1, ArgMax/ArgMin: eps 1e-3 with inputs 2/n apart (or 0.05 from zero), so no
    perturbation changes the maximum or crosses a kink; ties are two-way (differences give 1/2).
Every case passes for 40 draws of its data (100 for LogSoftmax): the data depends on the shared
RNG of gc_common and so on every cases file. MatMul cases cover every layout the MatMulGrad
kernel treats differently (reductions folded into the contraction, batch folded into the rows,
reductions through scratch, 1-D operands), Gemm every transA/transB/alpha/beta/C shape.
check_linalg_grad.py checks the same kernels exactly against float64 autograd at larger sizes."""
# ops: MatMul Gemm Softmax LogSoftmax LayerNormalization ReduceSum ReduceMean ReduceMax ReduceMin ReduceL1 ReduceL2 ReduceSumSquare ReduceLogSum ReduceLogSumExp ReduceProd ArgMax ArgMin
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from gc_common import RNG, model, rand

SMALL = ['--atol', '5e-6']
KINK = ['--eps', '1e-3']
LSM = ['--eps', '5e-3']
LSM_DNNL = ['--eps', '5e-3', '--atol', '1e-3']


def axes(*a):
    return np.array(a, np.int64)


def grid(*shape):
    """Distinct values spaced 2/n apart in [-1, 1), shuffled: no perturbation of 1e-3 changes
    which element is the maximum or minimum."""
    n = int(np.prod(shape))
    return (RNG.permutation(n) * (2.0 / n) - 1.0 + 0.5 / n).reshape(shape).astype(np.float32)


def away0(*shape):
    """Uniform in [-1, 1] at least 0.05 from zero (the kink of |x|)."""
    x = rand(*shape)
    return (np.sign(x) * (0.05 + 0.95 * np.abs(x))).astype(np.float32)


def dbl(op, inputs, attrs=None, opset=13):
    """`op` computed in double: every float32 initializer is Cast to double first and the
    result Cast back (exercises the double kernels); other inputs (axes) pass unchanged."""
    nodes, inits, names = [], [], []
    for i, arr in enumerate(inputs):
        if arr is None:
            names.append("")
            continue
        inits.append(numpy_helper.from_array(arr, f"in{i}"))
        if arr.dtype != np.float32:
            names.append(f"in{i}")
            continue
        nodes.append(helper.make_node("Cast", [f"in{i}"], [f"d{i}"], to=TensorProto.DOUBLE))
        names.append(f"d{i}")
    nodes.append(helper.make_node(op, names, ["y"], **(attrs or {})))
    nodes.append(helper.make_node("Cast", ["y"], ["out0"], to=TensorProto.FLOAT))
    graph = helper.make_graph(nodes, "gradcheck", [], [helper.make_tensor_value_info("out0", TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def net(nodes, inits, opset=17):
    """A graph of `nodes` whose last node's first output is the model output; `inits` maps
    initializer names to arrays."""
    out = nodes[-1].output[0]
    graph = helper.make_graph(nodes, "gradcheck", [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def ln_partial(x, scale, bias, consts, **attrs):
    """LayerNormalization whose inputs named in `consts` ('x', 's', 'b') are Constant nodes (no
    gradient requested for them)."""
    vals = {"x": x, "s": scale, "b": bias}
    nodes = [const(k, vals[k]) for k in consts]
    nodes.append(helper.make_node("LayerNormalization", ["x", "s", "b"], ["out"], **attrs))
    return net(nodes, {k: v for k, v in vals.items() if k not in consts})


def shifted(op, x, shift, opset=13, **attrs):
    """op(x) + shift: LogSoftmax's values are ~ -log C, far from the [-1, 1] targets; centring
    them keeps the loss ~1, so its float32 rounding stays small next to the gradients."""
    return net([helper.make_node(op, ["x"], ["y"], **attrs), const("c", np.array(shift, np.float32)),
                helper.make_node("Add", ["y", "c"], ["out"])], {"x": x}, opset=opset)


def ln_stats(x, scale, bias, **attrs):
    """LayerNormalization whose Mean and InvStdDev outputs also reach the model output:
    out = (Y + Mean) * InvStdDev."""
    return net([helper.make_node("LayerNormalization", ["x", "s", "b"], ["y", "m", "r"], **attrs),
                helper.make_node("Add", ["y", "m"], ["t"]), helper.make_node("Mul", ["t", "r"], ["out"])],
               {"x": x, "s": scale, "b": bias})

CASES = {
    "MatMul": [
        ("2d", model("MatMul", [rand(3, 4), rand(4, 5)]), []),
        ("batched", model("MatMul", [rand(2, 3, 4), rand(2, 4, 5)]), []),
        ("weight_2d", model("MatMul", [rand(2, 3, 4), rand(4, 5)]), []),
        ("a_2d", model("MatMul", [rand(3, 4), rand(2, 4, 5)]), []),
        ("a_batch1", model("MatMul", [rand(1, 3, 4), rand(2, 4, 5)]), []),
        ("bcast_both", model("MatMul", [rand(2, 1, 3, 4), rand(1, 3, 4, 5)]), []),
        ("bcast_inner", model("MatMul", [rand(2, 3, 3, 4), rand(3, 4, 5)]), []),
        ("bcast_outer", model("MatMul", [rand(2, 3, 3, 4), rand(2, 1, 4, 5)]), []),
        ("1d_a", model("MatMul", [rand(4), rand(2, 4, 5)]), []),
        ("1d_b", model("MatMul", [rand(2, 3, 4), rand(4)]), []),
        ("1d_both", model("MatMul", [rand(6), rand(6)]), []),
        ("1d_a_2d", model("MatMul", [rand(4), rand(4, 3)]), []),
        ("m1", model("MatMul", [rand(3, 1, 4), rand(4, 2)]), []),
        ("f64_bcast_both", dbl("MatMul", [rand(2, 1, 3, 4), rand(1, 3, 4, 5)]), []),
        ("f64_weight_2d", dbl("MatMul", [rand(2, 3, 4), rand(4, 5)]), []),
        ("f64_1d_a", dbl("MatMul", [rand(4), rand(2, 4, 5)]), []),
        ("large", model("MatMul", [rand(4, 16, 32), rand(32, 24)]), []),
    ],
    "Gemm": [
        ("plain", model("Gemm", [rand(3, 4), rand(4, 5), rand(3, 5)]), []),
        ("transA", model("Gemm", [rand(4, 3), rand(4, 5), rand(5)], {"transA": 1}), []),
        ("transB", model("Gemm", [rand(3, 4), rand(5, 4), rand(1, 5)], {"transB": 1}), []),
        ("transAB", model("Gemm", [rand(4, 3), rand(5, 4), rand(3, 1)], {"transA": 1, "transB": 1}), []),
        ("alpha_beta", model("Gemm", [rand(3, 4), rand(4, 5), rand(3, 5)], {"alpha": 0.7, "beta": -1.3}), []),
        ("alpha_beta_transAB", model("Gemm", [rand(4, 3), rand(5, 4), rand(5)],
                                     {"alpha": 1.5, "beta": 0.5, "transA": 1, "transB": 1}), []),
        ("scalar_c", model("Gemm", [rand(3, 4), rand(4, 5), rand(1)], {"beta": 2.0}), []),
        ("beta0", model("Gemm", [rand(3, 4), rand(4, 5), rand(3, 5)], {"beta": 0.0}), []),
        ("no_c", model("Gemm", [rand(3, 4), rand(5, 4)], {"transB": 1}), []),
        ("opset9", model("Gemm", [rand(3, 4), rand(4, 5), rand(5)], {"transA": 0}, opset=9), []),
        ("linear_large", model("Gemm", [rand(16, 64), rand(32, 64), rand(32)], {"transB": 1}), []),
        ("f64_transAB", dbl("Gemm", [rand(4, 3), rand(5, 4), rand(5)], {"alpha": 1.5, "transA": 1, "transB": 1}), []),
        ("f64_beta", dbl("Gemm", [rand(3, 4), rand(4, 5), rand(3, 1)], {"alpha": 0.5, "beta": -2.0}), []),
    ],
    # softmax outputs and their gradients are small (~1/C): absolute tolerance tightened to 5e-6
    "Softmax": [
        ("last", model("Softmax", [rand(3, 5, lo=-2, hi=2)]), SMALL),
        ("axis0", model("Softmax", [rand(4, 3, lo=-2, hi=2)], {"axis": 0}), SMALL),
        ("axis1_of_3d", model("Softmax", [rand(2, 4, 3, lo=-2, hi=2)], {"axis": 1}), SMALL),
        ("neg_axis", model("Softmax", [rand(2, 3, 4, lo=-2, hi=2)], {"axis": -2}), SMALL),
        ("legacy_default", model("Softmax", [rand(2, 3, 4, lo=-2, hi=2)], opset=11), SMALL),
        ("legacy_axis2", model("Softmax", [rand(2, 2, 3, 2, lo=-2, hi=2)], {"axis": 2}, opset=9), SMALL),
        ("attention", model("Softmax", [rand(2, 2, 16, 16, lo=-3, hi=3)]), SMALL),
        ("f64_axis1", dbl("Softmax", [rand(2, 4, 3, lo=-2, hi=2)], {"axis": 1}), SMALL),
    ],
    # outputs shifted by ~log C (loss ~1 instead of ~7). oneDNN's float32 log-softmax forward
    # (last axis) is accurate to ~3e-6 absolute (~10 ulp, not smooth in x), which central
    # differences turn into up to ~6e-4 of noise: atol 1e-3 there (a wrong axis or formula is off
    # by more than 1e-2); the C loops (axis with trailing dims, double) keep atol 1e-4.
    # check_linalg_grad.py compares the oneDNN path with float64 autograd at 1e-4 relative.
    "LogSoftmax": [
        ("last", shifted("LogSoftmax", rand(3, 5, lo=-2, hi=2), 1.6), LSM_DNNL),
        ("axis0", shifted("LogSoftmax", rand(4, 3, lo=-2, hi=2), 1.4, axis=0), LSM),
        ("axis1_of_3d", shifted("LogSoftmax", rand(2, 4, 3, lo=-2, hi=2), 1.4, axis=1), LSM),
        ("legacy_default", shifted("LogSoftmax", rand(2, 3, 4, lo=-2, hi=2), 2.5, opset=11), LSM_DNNL),
        ("legacy_axis0", shifted("LogSoftmax", rand(3, 2, 2, lo=-2, hi=2), 2.5, opset=9, axis=0), LSM_DNNL),
        ("f64_legacy", dbl("LogSoftmax", [rand(2, 3, 4, lo=-1, hi=1)], opset=11), []),
    ],
    "LayerNormalization": [
        ("last", model("LayerNormalization", [rand(3, 8), rand(8), rand(8)], opset=17), []),
        ("3d_last", model("LayerNormalization", [rand(2, 3, 6), rand(6), rand(6)], opset=17), []),
        ("axis1", model("LayerNormalization", [rand(2, 3, 4), rand(3, 4), rand(3, 4)], {"axis": 1}, opset=17), []),
        ("bcast_params", model("LayerNormalization", [rand(2, 3, 4), rand(1, 4), rand(3, 1)], {"axis": -2}, opset=17), []),
        ("no_bias", model("LayerNormalization", [rand(4, 5), rand(5)], {"epsilon": 0.1}, opset=17), []),
        ("stash_double", model("LayerNormalization", [rand(3, 7), rand(7), rand(7)], {"stash_type": 11}, opset=17), []),
        ("stats_outputs", ln_stats(rand(2, 3, 6), rand(6), rand(6)), []),
        ("only_params", ln_partial(rand(4, 6), rand(6), rand(6), "x"), []),
        ("only_params_bcast", ln_partial(rand(2, 3, 4), rand(3, 1), rand(1, 4), "x", axis=1), []),
        ("only_x", ln_partial(rand(4, 6), rand(6), rand(6), "sb"), []),
        ("no_db", ln_partial(rand(4, 6), rand(6), rand(6), "b"), []),
        ("no_dscale", ln_partial(rand(3, 2, 5), rand(5), rand(5), "s"), []),
        ("transformer", model("LayerNormalization", [rand(2, 16, 64), rand(64, lo=0.5, hi=1.5), rand(64)], opset=17), []),
        ("f64", dbl("LayerNormalization", [rand(2, 3, 4), rand(4), rand(3, 4)], {"axis": 1}, opset=17), []),
    ],
    # reductions: axes as attribute (ReduceSum < 13, others < 18) or as input 1
    "ReduceSum": [
        ("all", model("ReduceSum", [rand(3, 4)]), []),
        ("axis1_nokeep", model("ReduceSum", [rand(2, 3, 4), axes(1)], {"keepdims": 0}), []),
        ("axes02", model("ReduceSum", [rand(2, 3, 4), axes(0, 2)]), []),
        ("neg_axis_nokeep", model("ReduceSum", [rand(2, 3, 4), axes(-1, -3)], {"keepdims": 0}), []),
        ("noop", model("ReduceSum", [rand(3, 4), axes()], {"noop_with_empty_axes": 1}), []),
        ("empty_axes_all", model("ReduceSum", [rand(3, 4), axes()], {"keepdims": 0}), []),
        ("attr_opset11", model("ReduceSum", [rand(2, 3, 4)], {"axes": [1], "keepdims": 0}, opset=11), []),
        ("f64", dbl("ReduceSum", [rand(2, 3, 4), axes(0, 2)], {"keepdims": 0}), []),
    ],
    "ReduceMean": [
        ("all_nokeep", model("ReduceMean", [rand(3, 4)], {"keepdims": 0}), []),
        ("attr_axis1", model("ReduceMean", [rand(2, 3, 4)], {"axes": [1]}), []),
        ("attr_axes02_nokeep", model("ReduceMean", [rand(2, 3, 4)], {"axes": [0, 2], "keepdims": 0}), []),
        ("input_opset18", model("ReduceMean", [rand(2, 3, 4), axes(-1)], {"keepdims": 0}, opset=18), []),
        ("noop_opset18", model("ReduceMean", [rand(2, 3), axes()], {"noop_with_empty_axes": 1}, opset=18), []),
        ("spatial", model("ReduceMean", [rand(4, 8, 7, 7)], {"axes": [2, 3]}), []),
        ("tokens", model("ReduceMean", [rand(2, 197, 32)], {"axes": [1], "keepdims": 0}), []),
        ("f64", dbl("ReduceMean", [rand(2, 3, 4)], {"axes": [1], "keepdims": 0}), []),
    ],
    "ReduceMax": [
        ("axis1", model("ReduceMax", [grid(3, 5, 2)], {"axes": [1]}), KINK),
        ("all_nokeep", model("ReduceMax", [grid(4, 6)], {"keepdims": 0}), KINK),
        ("input_opset18", model("ReduceMax", [grid(2, 3, 4), axes(0, 2)], {"keepdims": 0}, opset=18), KINK),
        ("tie", model("ReduceMax", [np.array([[0.5, -0.2, 0.5, 0.1], [0.3, 0.9, -0.4, 0.2]], np.float32)],
                      {"axes": [1]}), KINK),
    ],
    "ReduceMin": [
        ("axis0", model("ReduceMin", [grid(4, 3)], {"axes": [0], "keepdims": 0}), KINK),
        ("axes12", model("ReduceMin", [grid(2, 3, 4)], {"axes": [1, 2]}), KINK),
    ],
    "ReduceL1": [
        ("axis1", model("ReduceL1", [away0(3, 4)], {"axes": [1]}), KINK),
        ("all", model("ReduceL1", [away0(2, 3, 2)], {"keepdims": 0}), KINK),
    ],
    "ReduceL2": [
        ("axis1", model("ReduceL2", [rand(3, 4)], {"axes": [1]}), []),
        ("axes02_nokeep", model("ReduceL2", [rand(2, 3, 4)], {"axes": [0, 2], "keepdims": 0}), []),
        ("input_opset18", model("ReduceL2", [rand(3, 5), axes(-1)], opset=18), []),
    ],
    "ReduceSumSquare": [
        ("axis1", model("ReduceSumSquare", [rand(3, 4)], {"axes": [1]}), []),
        ("all_nokeep", model("ReduceSumSquare", [rand(2, 3, 2)], {"keepdims": 0}), []),
    ],
    "ReduceLogSum": [
        ("axis1", model("ReduceLogSum", [rand(3, 4, lo=0.2, hi=2.0)], {"axes": [1]}), []),
        ("all", model("ReduceLogSum", [rand(2, 5, lo=0.2, hi=2.0)]), []),
    ],
    "ReduceLogSumExp": [
        ("axis1", model("ReduceLogSumExp", [rand(3, 4, lo=-2, hi=2)], {"axes": [1]}), []),
        ("axes02_nokeep", model("ReduceLogSumExp", [rand(2, 3, 4, lo=-2, hi=2)], {"axes": [0, 2], "keepdims": 0}), []),
        ("input_opset18", model("ReduceLogSumExp", [rand(3, 5, lo=-2, hi=2), axes(0)], opset=18), []),
    ],
    "ReduceProd": [
        ("axis1", model("ReduceProd", [rand(3, 4, lo=0.5, hi=1.5)], {"axes": [1]}), []),
        ("signed_nokeep", model("ReduceProd", [away0(2, 3, 2)], {"axes": [0, 2], "keepdims": 0}), []),
        ("one_zero", model("ReduceProd", [np.array([[0.0, 0.7, -1.2], [0.8, 1.1, 0.9]], np.float32)], {"axes": [1]}), []),
        ("two_zeros", model("ReduceProd", [np.array([[0.0, 0.7, 0.0], [0.8, 0.0, 0.9]], np.float32)], {"axes": [1]}), []),
    ],
    # ArgMax on a path from a parameter: indices carry no gradient, autodiff stops there (also
    # when they reach the loss through a Cast to float)
    "ArgMax": [
        ("gather_cast", net([helper.make_node("ArgMax", ["w"], ["i"], axis=1, keepdims=0),
                             helper.make_node("Gather", ["w", "i"], ["g"], axis=0),
                             helper.make_node("Cast", ["i"], ["f"], to=TensorProto.FLOAT),
                             helper.make_node("Add", ["g", "f"], ["out"])],
                            {"w": grid(4, 4)}, opset=13), KINK),
    ],
    "ArgMin": [
        ("cast_mul", net([helper.make_node("ArgMin", ["w"], ["i"], axis=0, keepdims=1),
                          helper.make_node("Cast", ["i"], ["f"], to=TensorProto.FLOAT),
                          helper.make_node("Mul", ["w", "f"], ["out"])],
                         {"w": grid(3, 4)}, opset=13), KINK),
    ],
}
