"""cases_linalg.py - gradient-check cases for matrix products, normalization, softmax and
reductions (ops/matmul.c, ops/layernorm.c, ops/softmax.c, ops/reduce.c). Every float32
initializer is a parameter.

Tolerances: the loss is float32, so central differences with step h carry ~3e-8 / h of noise;
smooth ops use the default eps 1e-2, rtol 2e-2, atol 1e-4. Products are exact in the inputs
(bilinear), so their differences are exact up to rounding. Cases cover every MatMul layout the
MatMulGrad kernel treats differently (reductions folded into the contraction, batch folded into
the rows, reductions through scratch, 1-D operands) and every Gemm transA/transB/alpha/beta/C
shape combination."""
# ops: MatMul Gemm
from gc_common import model, rand

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
    ],
}
