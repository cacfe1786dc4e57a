/* unary.h - the engine behind single-input element-wise ops (ops/unary.c): math functions and
 * activations share one table of functions, a oneDNN eltwise fast path for float32 where
 * oneDNN has the function, C loops otherwise, and double/int64 generic paths for other dtypes.
 * Op files define their otl_op with .infer = an infer that calls otl_unary_setup(k, code) and
 * .prepare/.forward/.release = otl_unary_prepare/forward/release. The ops accept inputs in
 * oneDNN blocked layouts (OTL_OPF_ANY_LAYOUT): float32 functions oneDNN computes exactly enough
 * keep the layout, the others work on a plain copy and give a plain output. The environment variable
 * OTL_NO_DNNL_ELTWISE (any value) keeps large float32 tensors on the C loops too (for tests). */
#ifndef OTL_UNARY_H
#define OTL_UNARY_H

#include "ops/op.h"

typedef enum otl_unary_code {
    /* activations */
    OTL_U_RELU, OTL_U_LEAKY_RELU, OTL_U_ELU, OTL_U_SELU, OTL_U_CELU, OTL_U_SIGMOID,
    OTL_U_HARD_SIGMOID, OTL_U_HARD_SWISH, OTL_U_TANH, OTL_U_GELU, OTL_U_SOFTPLUS, OTL_U_SOFTSIGN,
    OTL_U_MISH, OTL_U_THRESHOLDED_RELU, OTL_U_SHRINK,
    /* math */
    OTL_U_SQRT, OTL_U_NEG, OTL_U_ABS, OTL_U_EXP, OTL_U_LOG, OTL_U_RECIPROCAL, OTL_U_ERF,
    OTL_U_FLOOR, OTL_U_CEIL, OTL_U_ROUND, OTL_U_SIGN, OTL_U_SIN, OTL_U_COS, OTL_U_TAN, OTL_U_ASIN,
    OTL_U_ACOS, OTL_U_ATAN, OTL_U_SINH, OTL_U_COSH, OTL_U_ASINH, OTL_U_ACOSH, OTL_U_ATANH,
    OTL_U_ISNAN, OTL_U_ISINF,
    OTL_U_COUNT_
} otl_unary_code;

/* A oneDNN eltwise forward-inference primitive over one memory descriptor (any layout). */
typedef struct otl_eltwise {
    dnnl_primitive_t prim;
    dnnl_memory_t src, dst;
} otl_eltwise;
otl_status otl_eltwise_create(otl_kctx *k, dnnl_alg_kind_t alg, float alpha, float beta,
                              const dnnl_memory_desc_t *md, otl_eltwise *e);
otl_status otl_eltwise_run(otl_kctx *k, otl_eltwise *e, const void *x, void *y);
void otl_eltwise_release(otl_eltwise *e);

/* Parse the op's attributes, check the input dtype, set the output (k->state is the engine's). */
otl_status otl_unary_setup(otl_kctx *k, otl_unary_code code);
otl_status otl_unary_prepare(otl_kctx *k);
otl_status otl_unary_forward(otl_kctx *k);
void otl_unary_release(otl_kctx *k);

/* y = f(x) for one element in double (the reference the fast paths are tested against). */
double otl_unary_ref(otl_kctx *k, double x);

/* Reverse mode (ops/activation_grad.c). How an op built with OTL_UNARY_OP differentiates:
 *   OTL_UG_RULE  differentiable in X: otl_unary_grad emits Neg/Mul/Div or a private
 *                onnx_tl.<Op>Grad(dY, T) node, T being Y where Y determines f'(x) (Relu, Sigmoid,
 *                Tanh, Sqrt, ...: X can be dropped after the forward) and X otherwise;
 *   OTL_UG_ZERO  piecewise constant (Floor, Sign, IsNaN, ...): not differentiable, autodiff
 *                routes no gradient through it (zero gradient);
 *   OTL_UG_NONE  no rule: an error when it lies between a parameter and the loss. */
enum { OTL_UG_NONE, OTL_UG_RULE, OTL_UG_ZERO };
otl_status otl_unary_grad(otl_gctx *c, otl_unary_code code);
/* Clip's rule: onnx_tl.ClipGrad(dY, Y, min, max). */
otl_status otl_clip_grad(otl_gctx *c);

#define OTL_UNARY_OP(NAME, TYPE, DOMAIN, SINCE, UNTIL, CODE, GRAD)                                \
    static otl_status NAME##_infer(otl_kctx *k) { return otl_unary_setup(k, CODE); }              \
    static otl_status NAME##_grad(otl_gctx *c) { return otl_unary_grad(c, CODE); }                \
    const otl_op otl_op_##NAME = {                                                                \
        .op_type = TYPE, .domain = DOMAIN, .since = SINCE, .until = UNTIL,                        \
        .flags = OTL_OPF_ANY_LAYOUT,                                                              \
        .infer = NAME##_infer, .prepare = otl_unary_prepare, .forward = otl_unary_forward,        \
        .release = otl_unary_release,                                                             \
        .grad_inputs = (GRAD) == OTL_UG_RULE, .grad = (GRAD) == OTL_UG_NONE ? NULL : NAME##_grad, \
    };

#endif
