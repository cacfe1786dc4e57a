"""cases_nn.py - gradient-check cases for convolution, pooling and batch normalization
(ops/conv.c, ops/pool.c, ops/batchnorm.c). Every float initializer (X included) is a parameter.
Tolerances: the loss is float32, so central differences carry ~1e-7 / eps of noise; piecewise
linear ops (max pooling) use a small eps so that no perturbation crosses a window's argmax."""
# ops: Conv ConvTranspose MaxPool AveragePool GlobalAveragePool GlobalMaxPool BatchNormalization
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from gc_common import RNG, model, rand


def chain(nodes, inits, out, opset=13):
    """A graph of several nodes over initializers {name: array}; `out` is its output."""
    graph = helper.make_graph(nodes, "gradcheck", [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def bn(x, opset=13, n_outputs=1, **attrs):
    """BatchNormalization over x; n_outputs=5 adds the running and saved statistics outputs (the
    backward then takes the saved batch statistics instead of recomputing them)."""
    c = x.shape[1]
    return model("BatchNormalization", [x, rand(c, lo=0.5, hi=1.5), rand(c), rand(c), rand(c, lo=0.5, hi=1.5)], attrs,
                 opset=opset, n_outputs=n_outputs)


def conv_bn(opset=13, **attrs):
    """Conv with 16 output channels (a blocked layout) into BatchNormalization."""
    return chain([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
                  helper.make_node("BatchNormalization", ["y", "s", "b", "m", "v"], ["z"], **attrs)],
                 {"x": rand(2, 8, 5, 6), "w": rand(16, 8, 3, 3, lo=-0.3, hi=0.3), "s": rand(16, lo=0.5, hi=1.5),
                  "b": rand(16), "m": rand(16), "v": rand(16, lo=0.5, hi=1.5)}, "z", opset)


def frozen(m, *names):
    """Mark initializers frozen (onnx_tl.frozen metadata): their gradients are not computed."""
    m.metadata_props.add(key="onnx_tl.frozen", value="\n".join(names))
    return m


def distinct(*shape, spacing=0.01):
    """Values at least `spacing` apart (a random permutation), so that max pooling's argmax
    does not flip under a perturbation of eps = 1e-3."""
    n = int(np.prod(shape))
    return ((RNG.permutation(n) - n / 2) * spacing).reshape(shape).astype(np.float32)


TOL = ['--rtol', '2e-2', '--atol', '1e-4', '--samples', '200']
BNTOL = ['--rtol', '3e-2', '--atol', '2e-4', '--eps', '3e-3', '--samples', '200']
MAXTOL = ['--rtol', '2e-2', '--atol', '1e-4', '--eps', '1e-3', '--samples', '400']

CASES = {
    "Conv": [
        ("2d_bias", model("Conv", [rand(2, 3, 7, 6), rand(4, 3, 3, 3), rand(4)], {"pads": [1, 1, 1, 1]}), TOL),
        ("2d_stride_dil_asym", model("Conv", [rand(2, 4, 9, 8), rand(6, 4, 3, 2)],
                                     {"strides": [2, 1], "dilations": [2, 1], "pads": [1, 0, 2, 1]}), TOL),
        ("2d_groups", model("Conv", [rand(1, 6, 6, 5), rand(4, 3, 3, 3), rand(4)],
                            {"group": 2, "pads": [0, 1, 1, 0]}), TOL),
        ("depthwise", model("Conv", [rand(2, 5, 6, 6), rand(5, 1, 3, 3), rand(5)],
                            {"group": 5, "strides": [2, 2], "pads": [1, 1, 1, 1]}), TOL),
        ("1d_same_upper", model("Conv", [rand(2, 3, 11), rand(4, 3, 4), rand(4)],
                                {"strides": [2], "auto_pad": "SAME_UPPER"}), TOL),
        ("1d_same_lower_dil", model("Conv", [rand(1, 2, 10), rand(3, 2, 3)],
                                    {"dilations": [2], "auto_pad": "SAME_LOWER"}), TOL),
        ("2d_valid_floor", model("Conv", [rand(2, 3, 8, 7), rand(2, 3, 3, 3), rand(2)],
                                 {"strides": [3, 2], "auto_pad": "VALID"}), TOL),
        ("3d", model("Conv", [rand(1, 2, 4, 5, 4), rand(3, 2, 2, 3, 2), rand(3)],
                     {"pads": [1, 0, 1, 0, 1, 0]}), TOL),
        ("1x1_bias", model("Conv", [rand(3, 8, 4, 4), rand(16, 8, 1, 1), rand(16)]), TOL),
        ("bias_only", frozen(model("Conv", [rand(2, 3, 5, 5), rand(4, 3, 3, 3), rand(4)]), "in0", "in1"), TOL),
        ("frozen_w_dx_db", frozen(model("Conv", [rand(2, 3, 5, 5), rand(4, 3, 3, 3), rand(4)], {"pads": [1, 1, 1, 1]}), "in1"), TOL),
        ("frozen_x_dw_only", frozen(model("Conv", [rand(2, 3, 5, 5), rand(4, 3, 3, 3)], {"strides": [2, 2]}), "in0"), TOL),
    ],
    "ConvTranspose": [
        ("2d_bias", model("ConvTranspose", [rand(2, 3, 4, 5), rand(3, 4, 3, 3), rand(4)],
                          {"strides": [2, 2], "pads": [1, 1, 1, 1]}), TOL),
        ("2d_groups_outpad_dil", model("ConvTranspose", [rand(1, 4, 3, 4), rand(4, 3, 3, 2), rand(6)],
                                       {"group": 2, "strides": [2, 3], "pads": [1, 0, 1, 0],
                                        "output_padding": [1, 2], "dilations": [2, 1]}), TOL),
        ("1d_output_shape", model("ConvTranspose", [rand(2, 2, 5), rand(2, 3, 3)],
                                  {"strides": [2], "output_shape": [10], "auto_pad": "SAME_UPPER"}), TOL),
        ("bias_only", frozen(model("ConvTranspose", [rand(2, 3, 4, 5), rand(3, 4, 3, 3), rand(4)]), "in0", "in1"), TOL),
        ("3d_frozen_w", frozen(model("ConvTranspose", [rand(1, 2, 3, 3, 2), rand(2, 3, 2, 2, 2), rand(3)],
                                     {"strides": [2, 1, 2]}), "in1"), TOL),
    ],
    "MaxPool": [
        ("2d_pads", model("MaxPool", [distinct(2, 3, 7, 6)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}), MAXTOL),
        ("2d_overlap_asym", model("MaxPool", [distinct(1, 2, 8, 9)], {"kernel_shape": [3, 2], "strides": [1, 2], "pads": [0, 1, 2, 0]}), MAXTOL),
        ("2d_ceil_dil", model("MaxPool", [distinct(2, 2, 9, 8)], {"kernel_shape": [3, 2], "strides": [2, 3], "pads": [1, 1, 1, 1],
                                                                   "dilations": [2, 1], "ceil_mode": 1}, opset=12), MAXTOL),
        ("1d_same_upper", model("MaxPool", [distinct(2, 3, 11)], {"kernel_shape": [3], "strides": [2], "auto_pad": "SAME_UPPER"}), MAXTOL),
        ("3d", model("MaxPool", [distinct(1, 2, 4, 5, 6)], {"kernel_shape": [2, 2, 3], "strides": [2, 1, 2], "pads": [0, 1, 1, 1, 0, 1]}), MAXTOL),
        ("4d_c_kernel", model("MaxPool", [distinct(1, 2, 3, 4, 3, 4)], {"kernel_shape": [2, 2, 2, 2]}), MAXTOL),
        ("with_indices", model("MaxPool", [distinct(2, 2, 6, 6)], {"kernel_shape": [2, 2], "strides": [2, 2]}, n_outputs=2), MAXTOL),
    ],
    "AveragePool": [
        ("2d_exclude_pad", model("AveragePool", [rand(2, 3, 7, 6)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}), TOL),
        ("2d_include_pad", model("AveragePool", [rand(2, 3, 7, 6)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                                                       "count_include_pad": 1}), TOL),
        ("2d_ceil_include_pad", model("AveragePool", [rand(1, 2, 9, 8)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                                                           "ceil_mode": 1, "count_include_pad": 1}), TOL),
        ("2d_ceil_exclude_pad", model("AveragePool", [rand(1, 2, 9, 8)], {"kernel_shape": [3, 2], "strides": [2, 3], "pads": [0, 1, 1, 0],
                                                                           "ceil_mode": 1}), TOL),
        ("2d_dilated", model("AveragePool", [rand(1, 2, 9, 8)], {"kernel_shape": [2, 2], "dilations": [2, 3], "pads": [1, 0, 0, 1]}, opset=19), TOL),
        ("1d_same_lower", model("AveragePool", [rand(2, 3, 10)], {"kernel_shape": [4], "strides": [3], "auto_pad": "SAME_LOWER"}), TOL),
        ("3d", model("AveragePool", [rand(1, 2, 4, 5, 6)], {"kernel_shape": [2, 3, 2], "strides": [1, 2, 2]}), TOL),
    ],
    "GlobalAveragePool": [
        ("2d", model("GlobalAveragePool", [rand(2, 5, 4, 3)]), TOL),
        ("1d", model("GlobalAveragePool", [rand(3, 2, 7)]), TOL),
        ("3d", model("GlobalAveragePool", [rand(1, 3, 2, 3, 4)]), TOL),
    ],
    "BatchNormalization": [
        ("train_2d", bn(rand(3, 4, 5, 3), epsilon=1e-3), BNTOL),
        ("train_rank2", bn(rand(6, 5)), BNTOL),
        ("train_rank3_opset9", bn(rand(4, 3, 7), opset=9), BNTOL),
        ("train_rank5", bn(rand(2, 3, 2, 3, 4)), BNTOL),
        ("train_rank6_c_view", bn(rand(2, 3, 2, 2, 3, 2)), BNTOL),
        ("train_mode_attr_opset15", bn(rand(3, 4, 5, 3), opset=15, training_mode=1, momentum=0.8), BNTOL),
        ("train_after_conv_blocked", conv_bn(), BNTOL),
        ("frozen_2d", bn(rand(3, 4, 5, 3), epsilon=1e-3), TOL + ["--bn-frozen"]),
        ("frozen_rank2", bn(rand(6, 5)), TOL + ["--bn-frozen"]),
        ("frozen_rank6_c_view", bn(rand(2, 3, 2, 2, 3, 2)), TOL + ["--bn-frozen"]),
        ("frozen_training_mode_attr", bn(rand(3, 4, 5, 3), opset=14, training_mode=1), TOL + ["--bn-frozen"]),
        ("frozen_after_conv_blocked", conv_bn(), TOL + ["--bn-frozen"]),
        ("train_frozen_scale", frozen(bn(rand(3, 4, 5, 3)), "in1"), BNTOL),
        ("train_dx_only", frozen(bn(rand(3, 4, 5, 3)), "in1", "in2"), BNTOL),
        ("frozen_dx_only", frozen(bn(rand(3, 4, 5, 3)), "in1", "in2"), TOL + ["--bn-frozen"]),
        ("train_params_only", frozen(bn(rand(3, 4, 5, 3)), "in0"), BNTOL),
        ("train_saved_stats_opset9", bn(rand(3, 4, 5, 3), opset=9, n_outputs=5), BNTOL),
        ("train_saved_stats_opset15", bn(rand(3, 4, 5, 3), opset=15, n_outputs=5), BNTOL),
        ("frozen_saved_stats_opset15", bn(rand(3, 4, 5, 3), opset=15, n_outputs=5), TOL + ["--bn-frozen"]),
    ],
    "GlobalMaxPool": [
        ("2d", model("GlobalMaxPool", [distinct(2, 5, 4, 3)]), MAXTOL),
        ("1d", model("GlobalMaxPool", [distinct(3, 2, 7)]), MAXTOL),
        ("3d", model("GlobalMaxPool", [distinct(1, 3, 2, 3, 4)]), MAXTOL),
    ],
}
