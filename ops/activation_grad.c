/* activation_grad.c - reverse mode of the single-input element-wise ops (ops/unary.c,
 * ops/activation.c): the rule otl_unary_grad (see ops/unary.h) and the private backward kernels
 *   onnx_tl.<Op>Grad(dY, T) -> dX = dY * f'(x)     (ReluGrad, SigmoidGrad, GeluGrad, ...)
 * T is the forward input X, or with attribute use_dst=1 the forward output Y: the rule passes Y
 * wherever Y determines f'(x) (Relu, LeakyRelu/Elu/ThresholdedRelu with alpha >= 0, Celu, Selu,
 * Sigmoid, HardSigmoid, Tanh, Softplus, Sqrt, Reciprocal, Tan, Clip), so that X can be dropped
 * after the forward. The other attributes are the forward node's. ClipGrad(dY, Y, min, max)
 * passes the gradient where min < x < max (strictly), bounds as in Clip (inputs, or attributes
 * min/max before opset 11).
 * Kernels: float32 on oneDNN eltwise backward (the forward's algorithm, *_use_dst_for_bwd on Y)
 * for the functions where it matches the double reference, in dY's blocked layout when dY and T
 * share it (OTL_OPF_ANY_LAYOUT); C loops otherwise (on plain copies of blocked inputs, plain
 * output); double/float16/bfloat16 through the double reference. Not differentiable. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/broadcast.h"
#include "ops/unary.h"

#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

#define G_CLIP OTL_U_COUNT_ /* ClipGrad: not a unary-engine code */

/* The private op of each differentiable code (NULL: none; Neg, Exp and Log use standard ops). */
static const char *const grad_op[OTL_U_COUNT_ + 1] = {
    [OTL_U_RELU] = "ReluGrad", [OTL_U_LEAKY_RELU] = "LeakyReluGrad", [OTL_U_ELU] = "EluGrad",
    [OTL_U_SELU] = "SeluGrad", [OTL_U_CELU] = "CeluGrad", [OTL_U_SIGMOID] = "SigmoidGrad",
    [OTL_U_HARD_SIGMOID] = "HardSigmoidGrad", [OTL_U_HARD_SWISH] = "HardSwishGrad",
    [OTL_U_TANH] = "TanhGrad", [OTL_U_GELU] = "GeluGrad", [OTL_U_SOFTPLUS] = "SoftplusGrad",
    [OTL_U_SOFTSIGN] = "SoftsignGrad", [OTL_U_MISH] = "MishGrad",
    [OTL_U_THRESHOLDED_RELU] = "ThresholdedReluGrad", [OTL_U_SHRINK] = "ShrinkGrad",
    [OTL_U_SQRT] = "SqrtGrad", [OTL_U_ABS] = "AbsGrad", [OTL_U_RECIPROCAL] = "ReciprocalGrad",
    [OTL_U_ERF] = "ErfGrad", [OTL_U_SIN] = "SinGrad", [OTL_U_COS] = "CosGrad", [OTL_U_TAN] = "TanGrad",
    [OTL_U_ASIN] = "AsinGrad", [OTL_U_ACOS] = "AcosGrad", [OTL_U_ATAN] = "AtanGrad",
    [OTL_U_SINH] = "SinhGrad", [OTL_U_COSH] = "CoshGrad", [OTL_U_ASINH] = "AsinhGrad",
    [OTL_U_ACOSH] = "AcoshGrad", [OTL_U_ATANH] = "AtanhGrad", [G_CLIP] = "ClipGrad",
};

/* Attribute defaults, as the forward ops (ops/unary.c). */
static void attr_defaults(int code, float *alpha, float *beta, float *gamma)
{
    *alpha = *beta = *gamma = 0.0f;
    switch (code) {
    case OTL_U_LEAKY_RELU: *alpha = 0.01f; break;
    case OTL_U_ELU: case OTL_U_CELU: case OTL_U_THRESHOLDED_RELU: *alpha = 1.0f; break;
    case OTL_U_SELU: *alpha = 1.67326319217681884765625f; *gamma = 1.05070102214813232421875f; break;
    case OTL_U_HARD_SIGMOID: *alpha = 0.2f; *beta = 0.5f; break;
    case OTL_U_SHRINK: *alpha = 0.5f; *beta = 0.0f; break;
    default: break;
    }
}

/* Can f'(x) be computed from y = f(x)? */
static int dst_ok(int code, float alpha, float gamma)
{
    switch (code) {
    case OTL_U_RELU: case OTL_U_SIGMOID: case OTL_U_HARD_SIGMOID: case OTL_U_TANH: case OTL_U_SOFTPLUS:
    case OTL_U_SQRT: case OTL_U_RECIPROCAL: case OTL_U_TAN: case G_CLIP:
        return 1;
    case OTL_U_LEAKY_RELU: case OTL_U_ELU: case OTL_U_THRESHOLDED_RELU: return alpha >= 0.0f;
    case OTL_U_CELU: return alpha > 0.0f;
    case OTL_U_SELU: return alpha > 0.0f && gamma > 0.0f;
    default: return 0;
    }
}

/* ---------------------------------------------------------------- the rule */

static float node_float(const otl_node *n, const char *name, float dflt)
{
    const otl_attr *a = otl_node_attr(n, name);
    return a && a->type == OTL_ATTR_FLOAT ? a->f : dflt;
}

/* Emit onnx_tl.<code>Grad(in...) with the forward's attributes and use_dst; its output is dX. */
static otl_status emit_private(otl_gctx *c, int code, int n_in, const char *const *in, int use_dst)
{
    otl_node *n;
    const char *dx = otl_gemit1(c, OTL_GRAD_DOMAIN, grad_op[code], n_in, in, &n);
    otl_status st = n ? otl_gattr_copy(c, n) : OTL_OK;
    if (!st && n)
        st = otl_gattr_int(c, n, "use_dst", use_dst);
    otl_grad_set(c, 0, dx);
    return st;
}

otl_status otl_unary_grad(otl_gctx *c, otl_unary_code code)
{
    if (!c->need[0])
        return OTL_OK;
    const otl_node *n = c->node;
    const char *dy = c->dy[0], *x = n->inputs[0], *y = n->outputs[0];
    switch (code) {
    case OTL_U_NEG:
        otl_grad_set(c, 0, otl_gemit1(c, "", "Neg", 1, &dy, NULL));
        return OTL_OK;
    case OTL_U_EXP: {
        const char *in[2] = {dy, y};
        otl_grad_set(c, 0, otl_gemit1(c, "", "Mul", 2, in, NULL));
        return OTL_OK;
    }
    case OTL_U_LOG: {
        const char *in[2] = {dy, x};
        otl_grad_set(c, 0, otl_gemit1(c, "", "Div", 2, in, NULL));
        return OTL_OK;
    }
    default:
        break;
    }
    if (!grad_op[code])
        return otl_error_set(c->err, OTL_ERR_UNSUPPORTED, "%s: node '%s' (%s): %s has no gradient", c->file,
                             n->name, n->op_type, n->op_type);
    float alpha, beta, gamma;
    attr_defaults(code, &alpha, &beta, &gamma);
    alpha = node_float(n, "alpha", alpha);
    gamma = node_float(n, "gamma", gamma);
    int use_dst = dst_ok(code, alpha, gamma);
    const char *in[2] = {dy, use_dst ? y : x};
    return emit_private(c, code, 2, in, use_dst);
}

/* Clip (ops/activation.c): ClipGrad(dY, Y, min, max). */
otl_status otl_clip_grad(otl_gctx *c)
{
    if (!c->need[0])
        return OTL_OK;
    const otl_node *n = c->node;
    const char *in[4] = {c->dy[0], n->outputs[0], n->n_inputs > 1 ? n->inputs[1] : "",
                         n->n_inputs > 2 ? n->inputs[2] : ""};
    return emit_private(c, G_CLIP, c->opset >= 11 ? 4 : 2, in, 1);
}

/* ---------------------------------------------------------------- kernels: setup */

typedef struct ugrad_state {
    int code;                  /* otl_unary_code or G_CLIP */
    int use_dst;               /* T is Y */
    float alpha, beta, gamma;
    int approx_tanh;           /* Gelu approximate="tanh" */
    double lo, hi;             /* Clip bounds (+-inf when absent) */
    int bounds_const;          /* Clip: bounds known at plan time */
    int blocked_dnnl;          /* dY and T share a blocked layout: oneDNN in it */
    dnnl_primitive_t prim;     /* oneDNN eltwise backward, or NULL */
    dnnl_memory_t mdy, mt, mdx;
    otl_plain pdy, pt;         /* C path: plain copies of blocked inputs */
} ugrad_state;

static const int float_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_BFLOAT16, 0};

/* oneDNN's backward algorithm for the op, where its float32 results match the double reference
 * (tests/gradcheck/check_eltwise_grad.py); 0 when the C loop is used. */
static int dnnl_bwd_alg(const ugrad_state *s, dnnl_alg_kind_t *alg, float *alpha, float *beta)
{
    *alpha = 0.0f;
    *beta = 0.0f;
    int d = s->use_dst;
    switch (s->code) {
    case OTL_U_RELU: *alg = d ? dnnl_eltwise_relu_use_dst_for_bwd : dnnl_eltwise_relu; return 1;
    case OTL_U_LEAKY_RELU:
        *alg = d ? dnnl_eltwise_relu_use_dst_for_bwd : dnnl_eltwise_relu;
        *alpha = s->alpha;
        return 1;
    case OTL_U_ELU:
        *alg = d ? dnnl_eltwise_elu_use_dst_for_bwd : dnnl_eltwise_elu;
        *alpha = s->alpha;
        return 1;
    case OTL_U_SIGMOID: *alg = d ? dnnl_eltwise_logistic_use_dst_for_bwd : dnnl_eltwise_logistic; return 1;
    case OTL_U_TANH: *alg = d ? dnnl_eltwise_tanh_use_dst_for_bwd : dnnl_eltwise_tanh; return 1;
    case OTL_U_SQRT: *alg = d ? dnnl_eltwise_sqrt_use_dst_for_bwd : dnnl_eltwise_sqrt; return 1;
    case OTL_U_ABS: *alg = dnnl_eltwise_abs; return !d;
    case OTL_U_GELU: *alg = s->approx_tanh ? dnnl_eltwise_gelu_tanh : dnnl_eltwise_gelu_erf; return !d;
    case OTL_U_HARD_SWISH: *alg = dnnl_eltwise_hardswish; return !d;
    case G_CLIP:
        *alg = d ? dnnl_eltwise_clip_v2_use_dst_for_bwd : dnnl_eltwise_clip_v2;
        *alpha = (float)s->lo;
        *beta = (float)s->hi;
        return s->bounds_const;
    default: return 0;
    }
}

static otl_status read_attrs(otl_kctx *k, ugrad_state *s)
{
    otl_status st;
    int64_t ud;
    attr_defaults(s->code, &s->alpha, &s->beta, &s->gamma);
    if ((st = otl_attr_int(k, "use_dst", 0, &ud)))
        return st;
    s->use_dst = ud != 0;
    switch (s->code) {
    case OTL_U_LEAKY_RELU: case OTL_U_ELU: case OTL_U_CELU: case OTL_U_THRESHOLDED_RELU:
        st = otl_attr_float(k, "alpha", s->alpha, &s->alpha);
        break;
    case OTL_U_SELU:
        if (!(st = otl_attr_float(k, "alpha", s->alpha, &s->alpha)))
            st = otl_attr_float(k, "gamma", s->gamma, &s->gamma);
        break;
    case OTL_U_HARD_SIGMOID:
        if (!(st = otl_attr_float(k, "alpha", s->alpha, &s->alpha)))
            st = otl_attr_float(k, "beta", s->beta, &s->beta);
        break;
    case OTL_U_SHRINK:
        if (!(st = otl_attr_float(k, "lambd", s->alpha, &s->alpha)))
            st = otl_attr_float(k, "bias", s->beta, &s->beta);
        break;
    case OTL_U_GELU: {
        const char *a;
        if ((st = otl_attr_str(k, "approximate", "none", &a)))
            break;
        if (strcmp(a, "tanh") == 0)
            s->approx_tanh = 1;
        else if (strcmp(a, "none") != 0)
            st = otl_kfail(k, OTL_ERR_INPUT, "approximate must be \"none\" or \"tanh\", got \"%s\"", a);
        break;
    }
    default:
        break;
    }
    if (st)
        return st;
    if (s->code == OTL_U_CELU && s->alpha == 0.0f)
        return otl_kfail(k, OTL_ERR_INPUT, "alpha must not be 0");
    if (s->use_dst && !dst_ok(s->code, s->alpha, s->gamma))
        return otl_kfail(k, OTL_ERR_INPUT, "use_dst=1 is not possible with these attributes (f'(x) is not a function of y)");
    return OTL_OK;
}

/* Clip's bounds: attributes min/max, inputs 2/3 (scalars of T's dtype; read now when const). */
static otl_status clip_bounds(otl_kctx *k, ugrad_state *s)
{
    float f;
    otl_status st;
    s->lo = -INFINITY;
    s->hi = INFINITY;
    s->bounds_const = 1;
    if (otl_node_attr(k->node, "min")) {
        if ((st = otl_attr_float(k, "min", 0.0f, &f)))
            return st;
        s->lo = f;
    }
    if (otl_node_attr(k->node, "max")) {
        if ((st = otl_attr_float(k, "max", 0.0f, &f)))
            return st;
        s->hi = f;
    }
    for (int i = 2; i <= 3; i++) {
        if (!otl_has_in(k, i))
            continue;
        const otl_rt *b = k->in[i];
        if (b->blocked || b->dtype != k->in[1]->dtype || b->numel != 1)
            return otl_kfail(k, OTL_ERR_INPUT, "bound '%s' must be a plain scalar of dtype %s", b->name,
                             otl_dtype_name(k->in[1]->dtype));
        if (!b->is_const) {
            s->bounds_const = 0;
            continue;
        }
        *(i == 2 ? &s->lo : &s->hi) = otl_get_f(b->data, b->dtype, 0);
    }
    return OTL_OK;
}

static otl_status ugrad_setup(otl_kctx *k, int code)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, float_types)) || (st = otl_check_in(k, 1, float_types)))
        return st;
    const otl_rt *dy = k->in[0], *t = k->in[1];
    if (dy->dtype != t->dtype)
        return otl_kfail(k, OTL_ERR_INPUT, "gradient '%s' (%s) and '%s' (%s) differ in dtype", dy->name,
                         otl_dtype_name(dy->dtype), t->name, otl_dtype_name(t->dtype));
    int same = dy->rank == t->rank;
    for (int d = 0; same && d < dy->rank; d++)
        same = dy->dims[d] == t->dims[d];
    if (!same)
        return otl_kfail(k, OTL_ERR_INPUT, "gradient '%s' and '%s' differ in shape", dy->name, t->name);
    ugrad_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->code = code;
    if ((st = read_attrs(k, s)))
        return st;
    if (code == G_CLIP && (st = clip_bounds(k, s)))
        return st;
    dnnl_alg_kind_t alg;
    float a, b;
    if (dy->blocked && t->blocked && dy->dtype == OTL_DTYPE_FLOAT && dnnl_memory_desc_equal(&dy->md, &t->md) &&
        dnnl_bwd_alg(s, &alg, &a, &b)) {
        s->blocked_dnnl = 1;
        return otl_rt_set_md(k, k->out[0], dy->dtype, dy->rank, dy->dims, &dy->md);
    }
    return otl_rt_set(k, k->out[0], dy->dtype, dy->rank, dy->dims);
}

static otl_status ugrad_prepare(otl_kctx *k)
{
    ugrad_state *s = k->state;
    const otl_rt *dy = k->in[0], *t = k->in[1];
    dnnl_alg_kind_t alg;
    float alpha, beta;
    dnnl_memory_desc_t md;
    otl_status st;
    if (s->blocked_dnnl) {
        md = dy->md;
    } else if (dy->blocked || t->blocked) {
        if ((st = otl_plain_prepare(k, dy, &s->pdy)) || (st = otl_plain_prepare(k, t, &s->pt)))
            return st;
        return OTL_OK;
    } else {
        if (dy->dtype != OTL_DTYPE_FLOAT || dy->numel < 1024 || getenv("OTL_NO_DNNL_ELTWISE"))
            return OTL_OK;
        if ((st = otl_md_plain(k, dy, &md)))
            return st;
    }
    if (!dnnl_bwd_alg(s, &alg, &alpha, &beta))
        return OTL_OK;
    dnnl_eltwise_desc_t fd, bd;
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    if ((st = otl_dnnl_check(k, dnnl_eltwise_forward_desc_init(&fd, dnnl_forward_training, alg, &md, alpha, beta),
                             "eltwise forward")) ||
        (st = otl_dnnl_check(k, otl_pd_create(&fpd, &fd, NULL, k->eng->eng, NULL), "eltwise forward")))
        return st;
    st = otl_dnnl_check(k, dnnl_eltwise_backward_desc_init(&bd, alg, &md, &md, alpha, beta), "eltwise backward");
    if (!st)
        st = otl_dnnl_check(k, otl_pd_create(&bpd, &bd, NULL, k->eng->eng, fpd), "eltwise backward");
    if (!st)
        st = otl_dnnl_primitive(k, bpd, &s->prim, "eltwise backward");
    if (bpd)
        dnnl_primitive_desc_destroy(bpd);
    dnnl_primitive_desc_destroy(fpd);
    if (!st && !(st = otl_dnnl_memory(k, &md, NULL, &s->mdy)) && !(st = otl_dnnl_memory(k, &md, NULL, &s->mt)))
        st = otl_dnnl_memory(k, &md, NULL, &s->mdx);
    return st;
}

static void ugrad_release(otl_kctx *k)
{
    ugrad_state *s = k->state;
    if (!s)
        return;
    if (s->prim)
        dnnl_primitive_destroy(s->prim);
    if (s->mdy)
        dnnl_memory_destroy(s->mdy);
    if (s->mt)
        dnnl_memory_destroy(s->mt);
    if (s->mdx)
        dnnl_memory_destroy(s->mdx);
    otl_plain_release(&s->pdy);
    otl_plain_release(&s->pt);
}

/* ---------------------------------------------------------------- kernels: reference (double) */

static double sigmoid_d(double x)
{
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

static double softplus_d(double x)
{
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

#define GELU_K 0.79788456080286535588 /* sqrt(2 / pi) */

/* dX for one element: g = dY, t = X or Y (use_dst). */
static double grad_d(const ugrad_state *s, double g, double t)
{
    const double a = s->alpha, b = s->beta, gm = s->gamma;
    const int d = s->use_dst;
    switch (s->code) {
    case OTL_U_RELU: return t > 0 ? g : 0.0;
    case OTL_U_LEAKY_RELU: return t > 0 ? g : a * g;
    case OTL_U_ELU: return t > 0 ? g : d ? g * (t + a) : g * a * exp(t);
    case OTL_U_SELU: return t > 0 ? gm * g : d ? g * (t + gm * a) : g * gm * a * exp(t);
    case OTL_U_CELU: return t > 0 ? g : d ? g * (t / a + 1.0) : g * exp(t / a);
    case OTL_U_SIGMOID: {
        double y = d ? t : sigmoid_d(t);
        return g * y * (1.0 - y);
    }
    case OTL_U_HARD_SIGMOID: {
        double h = d ? t : a * t + b;
        return h > 0 && h < 1 ? a * g : 0.0;
    }
    case OTL_U_HARD_SWISH: return t < -3 ? 0.0 : t <= 3 ? g * (t / 3.0 + 0.5) : g;
    case OTL_U_TANH: {
        double y = d ? t : tanh(t);
        return g * (1.0 - y * y);
    }
    case OTL_U_GELU:
        if (s->approx_tanh) {
            double th = tanh(GELU_K * (t + 0.044715 * t * t * t));
            return g * (0.5 * (1.0 + th) + 0.5 * t * (1.0 - th * th) * GELU_K * (1.0 + 3.0 * 0.044715 * t * t));
        }
        return g * (0.5 * erfc(-t * M_SQRT1_2) + t * exp(-0.5 * t * t) * 0.39894228040143267794);
    case OTL_U_SOFTPLUS: return d ? g * -expm1(-t) : g * sigmoid_d(t);
    case OTL_U_SOFTSIGN: {
        double q = 1.0 + fabs(t);
        return g / (q * q);
    }
    case OTL_U_MISH: {
        double th = tanh(softplus_d(t));
        return g * (th + t * sigmoid_d(t) * (1.0 - th * th));
    }
    case OTL_U_THRESHOLDED_RELU: return (d ? t > 0 : t > a) ? g : 0.0;
    case OTL_U_SHRINK: return t < -a || t > a ? g : 0.0;
    case OTL_U_SQRT: return d ? g * 0.5 / t : g * 0.5 / sqrt(t);
    case OTL_U_NEG: return -g;
    case OTL_U_ABS: return t > 0 ? g : t < 0 ? -g : 0.0;
    case OTL_U_EXP: return d ? g * t : g * exp(t);
    case OTL_U_LOG: return g / t;
    case OTL_U_RECIPROCAL: return d ? -g * t * t : -g / (t * t);
    case OTL_U_ERF: return g * 1.12837916709551257390 * exp(-t * t);
    case OTL_U_SIN: return g * cos(t);
    case OTL_U_COS: return -g * sin(t);
    case OTL_U_TAN: {
        if (d)
            return g * (1.0 + t * t);
        double c = cos(t);
        return g / (c * c);
    }
    case OTL_U_ASIN: return g / sqrt(1.0 - t * t);
    case OTL_U_ACOS: return -g / sqrt(1.0 - t * t);
    case OTL_U_ATAN: return g / (1.0 + t * t);
    case OTL_U_SINH: return g * cosh(t);
    case OTL_U_COSH: return g * sinh(t);
    case OTL_U_ASINH: return g / sqrt(t * t + 1.0);
    case OTL_U_ACOSH: return g / sqrt((t - 1.0) * (t + 1.0));
    case OTL_U_ATANH: return g / ((1.0 - t) * (1.0 + t));
    case G_CLIP: return t > s->lo && t < s->hi ? g : 0.0;
    default: return NAN;
    }
}

/* ---------------------------------------------------------------- kernels: float32 loops */

typedef struct ugrad_ctx {
    const ugrad_state *s;
    int dt;
    const void *dy, *t;
    void *dx;
    double lo, hi;
} ugrad_ctx;

static inline float sigmoid_f(float x)
{
    return x >= 0 ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
}

static inline float softplus_f(float x)
{
    return x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x));
}

#define GLOOP(EXPR)                                                                               \
    do {                                                                                          \
        _Pragma("omp simd") for (int64_t i = start; i < end; i++) {                               \
            const float g = dy[i], t = tv[i];                                                     \
            dx[i] = (EXPR);                                                                       \
        }                                                                                         \
    } while (0)

static void f32_range(void *ctx, int64_t start, int64_t end)
{
    const ugrad_ctx *c = ctx;
    const ugrad_state *s = c->s;
    const float *dy = c->dy, *tv = c->t;
    float *dx = c->dx;
    const float a = s->alpha, b = s->beta, gm = s->gamma, ga = s->gamma * s->alpha, ia = 1.0f / s->alpha;
    const int d = s->use_dst;
    switch (s->code) {
    case OTL_U_RELU: GLOOP(t > 0.0f ? g : 0.0f); break;
    case OTL_U_LEAKY_RELU: GLOOP(t > 0.0f ? g : a * g); break;
    case OTL_U_ELU:
        if (d)
            GLOOP(t > 0.0f ? g : g * (t + a));
        else
            GLOOP(t > 0.0f ? g : g * a * expf(t));
        break;
    case OTL_U_SELU:
        if (d)
            GLOOP(t > 0.0f ? gm * g : g * (t + ga));
        else
            GLOOP(t > 0.0f ? gm * g : g * ga * expf(t));
        break;
    case OTL_U_CELU:
        if (d)
            GLOOP(t > 0.0f ? g : g * (t * ia + 1.0f));
        else
            GLOOP(t > 0.0f ? g : g * expf(t * ia));
        break;
    case OTL_U_SIGMOID:
        if (d)
            GLOOP(g * t * (1.0f - t));
        else
            for (int64_t i = start; i < end; i++) {
                float y = sigmoid_f(tv[i]);
                dx[i] = dy[i] * y * (1.0f - y);
            }
        break;
    case OTL_U_HARD_SIGMOID:
        if (d)
            GLOOP(t > 0.0f && t < 1.0f ? a * g : 0.0f);
        else
            GLOOP(a * t + b > 0.0f && a * t + b < 1.0f ? a * g : 0.0f);
        break;
    case OTL_U_HARD_SWISH: GLOOP(t < -3.0f ? 0.0f : t <= 3.0f ? g * (t * (1.0f / 3.0f) + 0.5f) : g); break;
    case OTL_U_TANH:
        if (d)
            GLOOP(g * (1.0f - t * t));
        else
            for (int64_t i = start; i < end; i++) {
                float y = tanhf(tv[i]);
                dx[i] = dy[i] * (1.0f - y * y);
            }
        break;
    case OTL_U_GELU:
        if (s->approx_tanh) {
            for (int64_t i = start; i < end; i++) {
                const float t = tv[i], th = tanhf(0.7978845608f * (t + 0.044715f * t * t * t));
                dx[i] = dy[i] * (0.5f * (1.0f + th) +
                                 0.5f * t * (1.0f - th * th) * 0.7978845608f * (1.0f + 0.134145f * t * t));
            }
        } else {
            for (int64_t i = start; i < end; i++) {
                const float t = tv[i];
                dx[i] = dy[i] * (0.5f * erfcf(-t * 0.70710678f) + t * expf(-0.5f * t * t) * 0.39894228f);
            }
        }
        break;
    case OTL_U_SOFTPLUS:
        if (d)
            GLOOP(-g * expm1f(-t));
        else
            GLOOP(g * sigmoid_f(t));
        break;
    case OTL_U_SOFTSIGN: GLOOP(g / ((1.0f + fabsf(t)) * (1.0f + fabsf(t)))); break;
    case OTL_U_MISH:
        for (int64_t i = start; i < end; i++) {
            const float t = tv[i], th = tanhf(softplus_f(t));
            dx[i] = dy[i] * (th + t * sigmoid_f(t) * (1.0f - th * th));
        }
        break;
    case OTL_U_THRESHOLDED_RELU:
        if (d)
            GLOOP(t > 0.0f ? g : 0.0f);
        else
            GLOOP(t > a ? g : 0.0f);
        break;
    case OTL_U_SHRINK: GLOOP(t < -a || t > a ? g : 0.0f); break;
    case OTL_U_SQRT:
        if (d)
            GLOOP(g * 0.5f / t);
        else
            GLOOP(g * 0.5f / sqrtf(t));
        break;
    case OTL_U_NEG: GLOOP(((void)t, -g)); break;
    case OTL_U_ABS: GLOOP(t > 0.0f ? g : t < 0.0f ? -g : 0.0f); break;
    case OTL_U_EXP:
        if (d)
            GLOOP(g * t);
        else
            GLOOP(g * expf(t));
        break;
    case OTL_U_LOG: GLOOP(g / t); break;
    case OTL_U_RECIPROCAL:
        if (d)
            GLOOP(-g * t * t);
        else
            GLOOP(-g / (t * t));
        break;
    case OTL_U_ERF: GLOOP(g * 1.1283791671f * expf(-t * t)); break;
    case OTL_U_SIN: GLOOP(g * cosf(t)); break;
    case OTL_U_COS: GLOOP(-g * sinf(t)); break;
    case OTL_U_TAN:
        if (d)
            GLOOP(g * (1.0f + t * t));
        else
            GLOOP(g / (cosf(t) * cosf(t)));
        break;
    case OTL_U_ASIN: GLOOP(g / sqrtf((1.0f - t) * (1.0f + t))); break;
    case OTL_U_ACOS: GLOOP(-g / sqrtf((1.0f - t) * (1.0f + t))); break;
    case OTL_U_ATAN: GLOOP(g / (1.0f + t * t)); break;
    case OTL_U_SINH: GLOOP(g * coshf(t)); break;
    case OTL_U_COSH: GLOOP(g * sinhf(t)); break;
    case OTL_U_ASINH: GLOOP(g / sqrtf(t * t + 1.0f)); break;
    case OTL_U_ACOSH: GLOOP(g / sqrtf((t - 1.0f) * (t + 1.0f))); break;
    case OTL_U_ATANH: GLOOP(g / ((1.0f - t) * (1.0f + t))); break;
    case G_CLIP: {
        const float lo = (float)c->lo, hi = (float)c->hi;
        GLOOP(t > lo && t < hi ? g : 0.0f);
        break;
    }
    default: break;
    }
}

static void generic_range(void *ctx, int64_t start, int64_t end)
{
    const ugrad_ctx *c = ctx;
    ugrad_state s = *c->s;
    s.lo = c->lo;
    s.hi = c->hi;
    for (int64_t i = start; i < end; i++)
        otl_set_f(c->dx, c->dt, i, grad_d(&s, otl_get_f(c->dy, c->dt, i), otl_get_f(c->t, c->dt, i)));
}

static otl_status ugrad_forward(otl_kctx *k)
{
    ugrad_state *s = k->state;
    const otl_rt *dy = k->in[0], *t = k->in[1];
    otl_rt *dx = k->out[0];
    if (dx->numel == 0)
        return OTL_OK;
    if (s->prim) {
        dnnl_memory_set_data_handle(s->mdy, dy->data);
        dnnl_memory_set_data_handle(s->mt, t->data);
        dnnl_memory_set_data_handle(s->mdx, dx->data);
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, s->mdy},
                                   {s->use_dst ? DNNL_ARG_DST : DNNL_ARG_SRC, s->mt},
                                   {DNNL_ARG_DIFF_SRC, s->mdx}};
        return otl_dnnl_run(k, s->prim, 3, args);
    }
    ugrad_ctx c = {.s = s, .dt = dy->dtype, .dx = dx->data, .lo = s->lo, .hi = s->hi};
    otl_status st;
    if ((st = otl_plain_get(k, dy, &s->pdy, &c.dy)) || (st = otl_plain_get(k, t, &s->pt, &c.t)))
        return st;
    if (s->code == G_CLIP && !s->bounds_const)
        for (int i = 2; i <= 3; i++)
            if (otl_has_in(k, i))
                *(i == 2 ? &c.lo : &c.hi) = otl_get_f(k->in[i]->data, k->in[i]->dtype, 0);
    if (dy->dtype == OTL_DTYPE_FLOAT)
        otl_parallel_range(dx->numel, 8192, f32_range, &c);
    else
        otl_parallel_range(dx->numel, 2048, generic_range, &c);
    return OTL_OK;
}

/* ---------------------------------------------------------------- the private ops */

#define UGRAD_OP(NAME, CODE)                                                                      \
    static otl_status NAME##_infer(otl_kctx *k) { return ugrad_setup(k, CODE); }                  \
    const otl_op otl_op_##NAME = {                                                                \
        .op_type = #NAME, .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,                      \
        .flags = OTL_OPF_ANY_LAYOUT, .infer = NAME##_infer, .prepare = ugrad_prepare,             \
        .forward = ugrad_forward, .release = ugrad_release,                                       \
    };

UGRAD_OP(ReluGrad, OTL_U_RELU)
UGRAD_OP(LeakyReluGrad, OTL_U_LEAKY_RELU)
UGRAD_OP(EluGrad, OTL_U_ELU)
UGRAD_OP(SeluGrad, OTL_U_SELU)
UGRAD_OP(CeluGrad, OTL_U_CELU)
UGRAD_OP(SigmoidGrad, OTL_U_SIGMOID)
UGRAD_OP(HardSigmoidGrad, OTL_U_HARD_SIGMOID)
UGRAD_OP(HardSwishGrad, OTL_U_HARD_SWISH)
UGRAD_OP(TanhGrad, OTL_U_TANH)
UGRAD_OP(GeluGrad, OTL_U_GELU)
UGRAD_OP(SoftplusGrad, OTL_U_SOFTPLUS)
UGRAD_OP(SoftsignGrad, OTL_U_SOFTSIGN)
UGRAD_OP(MishGrad, OTL_U_MISH)
UGRAD_OP(ThresholdedReluGrad, OTL_U_THRESHOLDED_RELU)
UGRAD_OP(ShrinkGrad, OTL_U_SHRINK)
UGRAD_OP(SqrtGrad, OTL_U_SQRT)
UGRAD_OP(AbsGrad, OTL_U_ABS)
UGRAD_OP(ReciprocalGrad, OTL_U_RECIPROCAL)
UGRAD_OP(ErfGrad, OTL_U_ERF)
UGRAD_OP(SinGrad, OTL_U_SIN)
UGRAD_OP(CosGrad, OTL_U_COS)
UGRAD_OP(TanGrad, OTL_U_TAN)
UGRAD_OP(AsinGrad, OTL_U_ASIN)
UGRAD_OP(AcosGrad, OTL_U_ACOS)
UGRAD_OP(AtanGrad, OTL_U_ATAN)
UGRAD_OP(SinhGrad, OTL_U_SINH)
UGRAD_OP(CoshGrad, OTL_U_COSH)
UGRAD_OP(AsinhGrad, OTL_U_ASINH)
UGRAD_OP(AcoshGrad, OTL_U_ACOSH)
UGRAD_OP(AtanhGrad, OTL_U_ATANH)
UGRAD_OP(ClipGrad, G_CLIP)
