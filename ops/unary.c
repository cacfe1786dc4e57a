/* unary.c - single-input element-wise ops: the shared engine (see ops/unary.h) and the math ops
 * Sqrt, Neg, Abs, Exp, Log, Reciprocal, Erf, Floor, Ceil, Round, Sign, trigonometric and
 * hyperbolic functions, IsNaN, IsInf. Differentiable input: X (none for Floor, Ceil, Round, Sign,
 * IsNaN, IsInf, whose gradient is zero); the rule and backward kernels are in
 * ops/activation_grad.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/broadcast.h"
#include "ops/unary.h"

/* `omp simd` asks for vectorization; loops that call libm (powf, fmodf, erff...) stay scalar,
 * which clang would report as a failed transformation */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

typedef struct unary_state {
    otl_unary_code code;
    float alpha, beta, gamma;
    int approx_tanh;           /* Gelu approximate="tanh" */
    int detect_neg, detect_pos; /* IsInf */
    otl_eltwise e;             /* float32 through oneDNN eltwise (e.prim != NULL) */
    int blocked_dnnl;          /* blocked input kept blocked through oneDNN */
    otl_plain pin;             /* blocked input on the C path: its plain copy */
} unary_state;

enum { DT_FLOAT, DT_SIGNED, DT_NUMERIC };

static const struct unary_def {
    const char *name;
    int dtypes;                /* DT_*: which input dtypes are accepted */
    int cheap;                 /* a few instructions per element (parallel grain) */
    int dnnl;                  /* float32 via oneDNN eltwise */
} defs[OTL_U_COUNT_] = {
    [OTL_U_RELU] = {"Relu", DT_SIGNED, 1, 0},
    [OTL_U_LEAKY_RELU] = {"LeakyRelu", DT_FLOAT, 1, 0},
    [OTL_U_ELU] = {"Elu", DT_FLOAT, 0, 1},
    [OTL_U_SELU] = {"Selu", DT_FLOAT, 0, 0},
    [OTL_U_CELU] = {"Celu", DT_FLOAT, 0, 0},
    [OTL_U_SIGMOID] = {"Sigmoid", DT_FLOAT, 0, 1},
    [OTL_U_HARD_SIGMOID] = {"HardSigmoid", DT_FLOAT, 1, 0},
    [OTL_U_HARD_SWISH] = {"HardSwish", DT_FLOAT, 1, 1},
    [OTL_U_TANH] = {"Tanh", DT_FLOAT, 0, 1},
    [OTL_U_GELU] = {"Gelu", DT_FLOAT, 0, 1},
    [OTL_U_SOFTPLUS] = {"Softplus", DT_FLOAT, 0, 0},
    [OTL_U_SOFTSIGN] = {"Softsign", DT_FLOAT, 1, 0},
    [OTL_U_MISH] = {"Mish", DT_FLOAT, 0, 0},
    [OTL_U_THRESHOLDED_RELU] = {"ThresholdedRelu", DT_FLOAT, 1, 0},
    [OTL_U_SHRINK] = {"Shrink", DT_NUMERIC, 1, 0},
    [OTL_U_SQRT] = {"Sqrt", DT_FLOAT, 1, 1},
    [OTL_U_NEG] = {"Neg", DT_SIGNED, 1, 0},
    [OTL_U_ABS] = {"Abs", DT_NUMERIC, 1, 0},
    [OTL_U_EXP] = {"Exp", DT_FLOAT, 0, 1},
    [OTL_U_LOG] = {"Log", DT_FLOAT, 0, 0},
    [OTL_U_RECIPROCAL] = {"Reciprocal", DT_FLOAT, 1, 0},
    [OTL_U_ERF] = {"Erf", DT_NUMERIC, 1, 0},
    [OTL_U_FLOOR] = {"Floor", DT_FLOAT, 1, 0},
    [OTL_U_CEIL] = {"Ceil", DT_FLOAT, 1, 0},
    [OTL_U_ROUND] = {"Round", DT_FLOAT, 1, 0},
    [OTL_U_SIGN] = {"Sign", DT_NUMERIC, 1, 0},
    [OTL_U_SIN] = {"Sin", DT_FLOAT, 0, 0},
    [OTL_U_COS] = {"Cos", DT_FLOAT, 0, 0},
    [OTL_U_TAN] = {"Tan", DT_FLOAT, 0, 0},
    [OTL_U_ASIN] = {"Asin", DT_FLOAT, 0, 0},
    [OTL_U_ACOS] = {"Acos", DT_FLOAT, 0, 0},
    [OTL_U_ATAN] = {"Atan", DT_FLOAT, 0, 0},
    [OTL_U_SINH] = {"Sinh", DT_FLOAT, 0, 0},
    [OTL_U_COSH] = {"Cosh", DT_FLOAT, 0, 0},
    [OTL_U_ASINH] = {"Asinh", DT_FLOAT, 0, 0},
    [OTL_U_ACOSH] = {"Acosh", DT_FLOAT, 0, 0},
    [OTL_U_ATANH] = {"Atanh", DT_FLOAT, 0, 0},
    [OTL_U_ISNAN] = {"IsNaN", DT_FLOAT, 1, 0},
    [OTL_U_ISINF] = {"IsInf", DT_FLOAT, 1, 0},
};

static int is_signed_int(int dt)
{
    return dt == OTL_DTYPE_INT8 || dt == OTL_DTYPE_INT16 || dt == OTL_DTYPE_INT32 || dt == OTL_DTYPE_INT64;
}

static int is_unsigned_int(int dt)
{
    return dt == OTL_DTYPE_UINT8 || dt == OTL_DTYPE_UINT16 || dt == OTL_DTYPE_UINT32 || dt == OTL_DTYPE_UINT64;
}

static int is_float(int dt)
{
    return dt == OTL_DTYPE_FLOAT || dt == OTL_DTYPE_DOUBLE || dt == OTL_DTYPE_FLOAT16 || dt == OTL_DTYPE_BFLOAT16;
}

/* The float32 functions oneDNN's eltwise computes to float precision (checked against the
 * double reference over [-30, 30] at rtol 1e-3, atol 1e-7); its log, soft_relu, mish and
 * gelu_tanh are not among them (log near 1, tails of the others). Plain inputs use it only where
 * it beats the C loops (defs[].dnnl), blocked inputs whenever the function is here. */
static int dnnl_alg(const unary_state *s, dnnl_alg_kind_t *alg, float *alpha, float *beta)
{
    *alpha = 0.0f;
    *beta = 0.0f;
    switch (s->code) {
    case OTL_U_RELU: *alg = dnnl_eltwise_relu; return 1;
    case OTL_U_LEAKY_RELU: *alg = dnnl_eltwise_relu; *alpha = s->alpha; return 1;
    case OTL_U_ABS: *alg = dnnl_eltwise_abs; return 1;
    case OTL_U_NEG: *alg = dnnl_eltwise_linear; *alpha = -1.0f; return 1;
    case OTL_U_ELU: *alg = dnnl_eltwise_elu; *alpha = s->alpha; return 1;
    case OTL_U_SIGMOID: *alg = dnnl_eltwise_logistic; return 1;
    case OTL_U_TANH: *alg = dnnl_eltwise_tanh; return 1;
    case OTL_U_GELU: *alg = dnnl_eltwise_gelu_erf; return !s->approx_tanh;
    case OTL_U_EXP: *alg = dnnl_eltwise_exp; return 1;
    case OTL_U_SQRT: *alg = dnnl_eltwise_sqrt; return 1;
    case OTL_U_HARD_SWISH: *alg = dnnl_eltwise_hardswish; return 1;
    default: return 0;
    }
}

/* ---------------------------------------------------------------- setup */

otl_status otl_unary_setup(otl_kctx *k, otl_unary_code code)
{
    otl_status st = otl_check_in(k, 0, NULL);
    if (st)
        return st;
    unary_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->code = code;
    int dt = k->in[0]->dtype, ok = is_float(dt);
    switch (defs[code].dtypes) {
    case DT_SIGNED: ok |= is_signed_int(dt) && (code != OTL_U_RELU || k->opset >= 14); break;
    case DT_NUMERIC: ok |= is_signed_int(dt) || is_unsigned_int(dt); break;
    }
    if (!ok)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "input '%s': dtype %s is not supported", k->in[0]->name,
                         otl_dtype_name(dt));
    switch (code) {
    case OTL_U_LEAKY_RELU: st = otl_attr_float(k, "alpha", 0.01f, &s->alpha); break;
    case OTL_U_ELU:
    case OTL_U_CELU:
    case OTL_U_THRESHOLDED_RELU: st = otl_attr_float(k, "alpha", 1.0f, &s->alpha); break;
    case OTL_U_SELU:
        if (!(st = otl_attr_float(k, "alpha", 1.67326319217681884765625f, &s->alpha)))
            st = otl_attr_float(k, "gamma", 1.05070102214813232421875f, &s->gamma);
        break;
    case OTL_U_HARD_SIGMOID:
        if (!(st = otl_attr_float(k, "alpha", 0.2f, &s->alpha)))
            st = otl_attr_float(k, "beta", 0.5f, &s->beta);
        break;
    case OTL_U_SHRINK:
        if (!(st = otl_attr_float(k, "lambd", 0.5f, &s->alpha)))
            st = otl_attr_float(k, "bias", 0.0f, &s->beta);
        break;
    case OTL_U_GELU: {
        const char *a;
        if (strcmp(k->node->domain, "com.microsoft") == 0)
            break;
        if ((st = otl_attr_str(k, "approximate", "none", &a)))
            break;
        if (strcmp(a, "tanh") == 0)
            s->approx_tanh = 1;
        else if (strcmp(a, "none") != 0)
            st = otl_kfail(k, OTL_ERR_INPUT, "approximate must be \"none\" or \"tanh\", got \"%s\"", a);
        break;
    }
    case OTL_U_ISINF: {
        int64_t n, p;
        if (!(st = otl_attr_int(k, "detect_negative", 1, &n)) && !(st = otl_attr_int(k, "detect_positive", 1, &p))) {
            s->detect_neg = n != 0;
            s->detect_pos = p != 0;
        }
        break;
    }
    default:
        break;
    }
    if (st)
        return st;
    if (code == OTL_U_CELU && s->alpha == 0.0f)
        return otl_kfail(k, OTL_ERR_INPUT, "alpha must not be 0");
    int out_dt = code == OTL_U_ISNAN || code == OTL_U_ISINF ? OTL_DTYPE_BOOL : dt;
    dnnl_alg_kind_t alg;
    float a, b;
    if (k->in[0]->blocked && dt == OTL_DTYPE_FLOAT && out_dt == dt && dnnl_alg(s, &alg, &a, &b)) {
        s->blocked_dnnl = 1;
        return otl_rt_set_md(k, k->out[0], out_dt, k->in[0]->rank, k->in[0]->dims, &k->in[0]->md);
    }
    return otl_rt_set(k, k->out[0], out_dt, k->in[0]->rank, k->in[0]->dims);
}

/* ---------------------------------------------------------------- reference (double) */

static double softplus_d(double x)
{
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

static double ref_d(const unary_state *s, double x)
{
    switch (s->code) {
    case OTL_U_RELU: return x > 0 ? x : 0;
    case OTL_U_LEAKY_RELU: return x >= 0 ? x : s->alpha * x;
    case OTL_U_ELU: return x >= 0 ? x : s->alpha * expm1(x);
    case OTL_U_SELU: return x > 0 ? s->gamma * x : s->gamma * s->alpha * expm1(x);
    case OTL_U_CELU: return (x > 0 ? x : 0) + fmin(0.0, s->alpha * expm1(x / s->alpha));
    case OTL_U_SIGMOID: return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
    case OTL_U_HARD_SIGMOID: return fmax(0.0, fmin(1.0, s->alpha * x + s->beta));
    case OTL_U_HARD_SWISH: return x * fmax(0.0, fmin(1.0, x * (double)(1.0f / 6.0f) + 0.5));
    case OTL_U_TANH: return tanh(x);
    case OTL_U_GELU:
        if (s->approx_tanh) /* 0.5 (1 + tanh u) = sigmoid(2u), without cancellation for x << 0 */
            return x / (1.0 + exp(-1.5957691216057307118 * (x + 0.044715 * x * x * x)));
        return 0.5 * x * erfc(-x * 0.70710678118654752440);
    case OTL_U_SOFTPLUS: return softplus_d(x);
    case OTL_U_SOFTSIGN: return x / (1.0 + fabs(x));
    case OTL_U_MISH: return x * tanh(softplus_d(x));
    case OTL_U_THRESHOLDED_RELU: return x > s->alpha ? x : 0;
    case OTL_U_SHRINK: return x < -s->alpha ? x + s->beta : x > s->alpha ? x - s->beta : 0;
    case OTL_U_SQRT: return sqrt(x);
    case OTL_U_NEG: return -x;
    case OTL_U_ABS: return fabs(x);
    case OTL_U_EXP: return exp(x);
    case OTL_U_LOG: return log(x);
    case OTL_U_RECIPROCAL: return 1.0 / x;
    case OTL_U_ERF: return erf(x);
    case OTL_U_FLOOR: return floor(x);
    case OTL_U_CEIL: return ceil(x);
    case OTL_U_ROUND: return nearbyint(x);
    case OTL_U_SIGN: return x > 0 ? 1 : x < 0 ? -1 : x;
    case OTL_U_SIN: return sin(x);
    case OTL_U_COS: return cos(x);
    case OTL_U_TAN: return tan(x);
    case OTL_U_ASIN: return asin(x);
    case OTL_U_ACOS: return acos(x);
    case OTL_U_ATAN: return atan(x);
    case OTL_U_SINH: return sinh(x);
    case OTL_U_COSH: return cosh(x);
    case OTL_U_ASINH: return asinh(x);
    case OTL_U_ACOSH: return acosh(x);
    case OTL_U_ATANH: return atanh(x);
    case OTL_U_ISNAN: return isnan(x);
    case OTL_U_ISINF: return isinf(x) && ((x < 0 && s->detect_neg) || (x > 0 && s->detect_pos));
    default: return NAN;
    }
}

double otl_unary_ref(otl_kctx *k, double x)
{
    return ref_d(k->state, x);
}

/* ---------------------------------------------------------------- float32 loops */

typedef struct unary_ctx {
    const unary_state *s;
    int dt, out_dt;
    const void *x;
    void *y;
} unary_ctx;

static inline float softplus_f(float x)
{
    return x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x));
}

/* erf in float to within 5e-7 relative (the rational approximation XLA and Eigen use, on
 * |x| <= 4), written with integer selects only so that the loop vectorizes; NaN passes. */
static inline float erf_f(float x)
{
    uint32_t b, rb;
    memcpy(&b, &x, 4);
    uint32_t sign = b & 0x80000000u, ab = b & 0x7fffffffu;
    uint32_t cb = (ab < 0x40800000u ? ab : 0x40800000u) | sign; /* clamp to [-4, 4] */
    float a;
    memcpy(&a, &cb, 4);
    float x2 = a * a;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    p = p * a;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    float r = p / q;
    memcpy(&rb, &r, 4);
    uint32_t rab = rb & 0x7fffffffu;
    rb = (rab < 0x3f800000u ? rab : 0x3f800000u) | sign; /* |erf| <= 1 */
    uint32_t nan = 0u - (uint32_t)(ab > 0x7f800000u);
    rb = (b & nan) | (rb & ~nan);
    memcpy(&r, &rb, 4);
    return r;
}

/* Note for the loops: with GCC's default -ftrapping-math a conditional float expression
 * (c ? a * v : v) is not if-converted and the loop stays scalar; max/min shapes
 * (v > 0 ? v : 0) are. */
#define LOOP(EXPR)                                                                                \
    do {                                                                                          \
        _Pragma("omp simd") for (int64_t i = start; i < end; i++) {                               \
            const float v = x[i];                                                                 \
            y[i] = (EXPR);                                                                        \
        }                                                                                         \
    } while (0)

static void f32_range(void *ctx, int64_t start, int64_t end)
{
    const unary_ctx *c = ctx;
    const unary_state *s = c->s;
    const float *x = c->x;
    float *y = c->y;
    const float alpha = s->alpha, beta = s->beta, gamma = s->gamma;
    switch (s->code) {
    case OTL_U_RELU: LOOP(v > 0 ? v : 0.0f); break;
    case OTL_U_LEAKY_RELU: LOOP((v > 0 ? v : 0.0f) + alpha * (v < 0 ? v : 0.0f)); break;
    case OTL_U_ELU: LOOP(v >= 0 ? v : alpha * expm1f(v)); break;
    case OTL_U_SELU: LOOP(v > 0 ? gamma * v : gamma * alpha * expm1f(v)); break;
    case OTL_U_CELU: LOOP((v > 0 ? v : 0.0f) + fminf(0.0f, alpha * expm1f(v / alpha))); break;
    case OTL_U_SIGMOID: LOOP(v >= 0 ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v))); break;
    case OTL_U_HARD_SIGMOID:
        #pragma omp simd
        for (int64_t i = start; i < end; i++) {
            float h = alpha * x[i] + beta;
            h = h > 0.0f ? h : 0.0f;
            y[i] = h < 1.0f ? h : 1.0f;
        }
        break;
    case OTL_U_HARD_SWISH: /* x * max(0, min(1, x / 6 + 1/2)); not vectorized (GCC threads the
                              clamp), large tensors go to oneDNN */
        #pragma omp simd
        for (int64_t i = start; i < end; i++) {
            const float v = x[i];
            float h = v * (1.0f / 6.0f) + 0.5f;
            h = h > 0.0f ? h : 0.0f;
            h = h < 1.0f ? h : 1.0f;
            y[i] = v * h;
        }
        break;
    case OTL_U_TANH: LOOP(tanhf(v)); break;
    case OTL_U_GELU:
        if (s->approx_tanh)
            LOOP(v / (1.0f + expf(-1.5957691216f * (v + 0.044715f * v * v * v))));
        else
            LOOP((float)(0.5 * v * erfc(-v * 0.70710678118654752440)));
        break;
    case OTL_U_SOFTPLUS: LOOP(softplus_f(v)); break;
    case OTL_U_SOFTSIGN: LOOP(v / (1.0f + fabsf(v))); break;
    case OTL_U_MISH: LOOP(v * tanhf(softplus_f(v))); break;
    case OTL_U_THRESHOLDED_RELU: LOOP(v > alpha ? v : 0.0f); break;
    case OTL_U_SHRINK: LOOP(v < -alpha ? v + beta : v > alpha ? v - beta : 0.0f); break;
    case OTL_U_SQRT: LOOP(sqrtf(v)); break;
    case OTL_U_NEG: LOOP(-v); break;
    case OTL_U_ABS: LOOP(fabsf(v)); break;
    case OTL_U_EXP: LOOP(expf(v)); break;
    case OTL_U_LOG: LOOP(logf(v)); break;
    case OTL_U_RECIPROCAL: LOOP(1.0f / v); break;
    case OTL_U_ERF: LOOP(erf_f(v)); break;
    case OTL_U_FLOOR: LOOP(floorf(v)); break;
    case OTL_U_CEIL: LOOP(ceilf(v)); break;
    case OTL_U_ROUND: LOOP(nearbyintf(v)); break;
    case OTL_U_SIGN: LOOP(v > 0 ? 1.0f : v < 0 ? -1.0f : v); break;
    case OTL_U_SIN: LOOP(sinf(v)); break;
    case OTL_U_COS: LOOP(cosf(v)); break;
    case OTL_U_TAN: LOOP(tanf(v)); break;
    case OTL_U_ASIN: LOOP(asinf(v)); break;
    case OTL_U_ACOS: LOOP(acosf(v)); break;
    case OTL_U_ATAN: LOOP(atanf(v)); break;
    case OTL_U_SINH: LOOP(sinhf(v)); break;
    case OTL_U_COSH: LOOP(coshf(v)); break;
    case OTL_U_ASINH: LOOP(asinhf(v)); break;
    case OTL_U_ACOSH: LOOP(acoshf(v)); break;
    case OTL_U_ATANH: LOOP(atanhf(v)); break;
    default: break;
    }
}

static void bool_range(void *ctx, int64_t start, int64_t end)
{
    const unary_ctx *c = ctx;
    uint8_t *y = c->y;
    if (c->dt == OTL_DTYPE_FLOAT) {
        const float *x = c->x;
        if (c->s->code == OTL_U_ISNAN) {
            #pragma omp simd
            for (int64_t i = start; i < end; i++)
                y[i] = x[i] != x[i];
            return;
        }
    }
    for (int64_t i = start; i < end; i++)
        y[i] = ref_d(c->s, otl_get_f(c->x, c->dt, i)) != 0;
}

/* integers: exact int64 arithmetic for Relu, Neg, Abs, Sign; double otherwise (Erf, Shrink) */
static void int_range(void *ctx, int64_t start, int64_t end)
{
    const unary_ctx *c = ctx;
    int dt = c->dt, uns = is_unsigned_int(dt);
    for (int64_t i = start; i < end; i++) {
        int64_t v = otl_get_i(c->x, dt, i);
        if (uns && (c->s->code == OTL_U_ABS || c->s->code == OTL_U_SIGN)) {
            otl_set_i(c->y, dt, i, c->s->code == OTL_U_ABS ? v : v != 0);
            continue;
        }
        switch (c->s->code) {
        case OTL_U_RELU: v = v > 0 ? v : 0; break;
        case OTL_U_NEG: v = (int64_t)(0 - (uint64_t)v); break;
        case OTL_U_ABS: v = v < 0 ? (int64_t)(0 - (uint64_t)v) : v; break;
        case OTL_U_SIGN: v = v > 0 ? 1 : v < 0 ? -1 : 0; break;
        default: {
            double r = ref_d(c->s, (double)v);
            v = isfinite(r) && fabs(r) < 9.2e18 ? (int64_t)r : 0;
            break;
        }
        }
        otl_set_i(c->y, dt, i, v);
    }
}

static void generic_range(void *ctx, int64_t start, int64_t end)
{
    const unary_ctx *c = ctx;
    for (int64_t i = start; i < end; i++)
        otl_set_f(c->y, c->dt, i, ref_d(c->s, otl_get_f(c->x, c->dt, i)));
}

/* ---------------------------------------------------------------- oneDNN and the entry points */

otl_status otl_eltwise_create(otl_kctx *k, dnnl_alg_kind_t alg, float alpha, float beta,
                              const dnnl_memory_desc_t *md, otl_eltwise *e)
{
    dnnl_eltwise_desc_t d;
    dnnl_primitive_desc_t pd;
    otl_status st;
    if ((st = otl_dnnl_check(k, dnnl_eltwise_forward_desc_init(&d, dnnl_forward_inference, alg, md, alpha, beta), "eltwise")))
        return st;
    if ((st = otl_dnnl_check(k, otl_pd_create(&pd, &d, NULL, k->eng->eng, NULL), "eltwise")))
        return st;
    st = otl_dnnl_primitive(k, pd, &e->prim, "eltwise");
    dnnl_primitive_desc_destroy(pd);
    if (st)
        return st;
    if ((st = otl_dnnl_memory(k, md, NULL, &e->src)) || (st = otl_dnnl_memory(k, md, NULL, &e->dst)))
        return st;
    return OTL_OK;
}

otl_status otl_eltwise_run(otl_kctx *k, otl_eltwise *e, const void *x, void *y)
{
    dnnl_memory_set_data_handle(e->src, (void *)x);
    dnnl_memory_set_data_handle(e->dst, y);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, e->src}, {DNNL_ARG_DST, e->dst}};
    return otl_dnnl_run(k, e->prim, 2, args);
}

void otl_eltwise_release(otl_eltwise *e)
{
    if (e->prim)
        dnnl_primitive_destroy(e->prim);
    if (e->src)
        dnnl_memory_destroy(e->src);
    if (e->dst)
        dnnl_memory_destroy(e->dst);
    memset(e, 0, sizeof *e);
}

otl_status otl_unary_prepare(otl_kctx *k)
{
    unary_state *s = k->state;
    const otl_rt *x = k->in[0];
    dnnl_alg_kind_t alg;
    float alpha, beta;
    if (s->blocked_dnnl) {
        dnnl_alg(s, &alg, &alpha, &beta);
        return otl_eltwise_create(k, alg, alpha, beta, &x->md, &s->e);
    }
    if (x->blocked)
        return otl_plain_prepare(k, x, &s->pin);
    if (x->dtype != OTL_DTYPE_FLOAT || !defs[s->code].dnnl || !dnnl_alg(s, &alg, &alpha, &beta) ||
        x->numel < 1024 || getenv("OTL_NO_DNNL_ELTWISE"))
        return OTL_OK;
    dnnl_memory_desc_t md;
    otl_status st = otl_md_plain(k, x, &md);
    if (st)
        return st;
    return otl_eltwise_create(k, alg, alpha, beta, &md, &s->e);
}

otl_status otl_unary_forward(otl_kctx *k)
{
    unary_state *s = k->state;
    const otl_rt *x = k->in[0];
    otl_rt *y = k->out[0];
    if (y->numel == 0)
        return OTL_OK;
    if (s->e.prim)
        return otl_eltwise_run(k, &s->e, x->data, y->data);
    const void *xd;
    otl_status st = otl_plain_get(k, x, &s->pin, &xd);
    if (st)
        return st;
    unary_ctx c = {.s = s, .dt = x->dtype, .out_dt = y->dtype, .x = xd, .y = y->data};
    int64_t grain = defs[s->code].cheap ? 32768 : 2048;
    otl_range_fn fn;
    if (y->dtype == OTL_DTYPE_BOOL)
        fn = bool_range;
    else if (x->dtype == OTL_DTYPE_FLOAT)
        fn = f32_range;
    else if (is_float(x->dtype))
        fn = generic_range, grain = 2048;
    else
        fn = int_range, grain = 4096;
    otl_parallel_range(y->numel, grain, fn, &c);
    return OTL_OK;
}

void otl_unary_release(otl_kctx *k)
{
    unary_state *s = k->state;
    if (!s)
        return;
    otl_eltwise_release(&s->e);
    otl_plain_release(&s->pin);
}

/* ---------------------------------------------------------------- math ops */

OTL_UNARY_OP(Sqrt, "Sqrt", "", 6, 22, OTL_U_SQRT, OTL_UG_RULE)
OTL_UNARY_OP(Neg, "Neg", "", 6, 22, OTL_U_NEG, OTL_UG_RULE)
OTL_UNARY_OP(Abs, "Abs", "", 6, 22, OTL_U_ABS, OTL_UG_RULE)
OTL_UNARY_OP(Exp, "Exp", "", 6, 22, OTL_U_EXP, OTL_UG_RULE)
OTL_UNARY_OP(Log, "Log", "", 6, 22, OTL_U_LOG, OTL_UG_RULE)
OTL_UNARY_OP(Reciprocal, "Reciprocal", "", 6, 22, OTL_U_RECIPROCAL, OTL_UG_RULE)
OTL_UNARY_OP(Erf, "Erf", "", 9, 22, OTL_U_ERF, OTL_UG_RULE)
OTL_UNARY_OP(Floor, "Floor", "", 6, 22, OTL_U_FLOOR, OTL_UG_ZERO)
OTL_UNARY_OP(Ceil, "Ceil", "", 6, 22, OTL_U_CEIL, OTL_UG_ZERO)
OTL_UNARY_OP(Round, "Round", "", 11, 22, OTL_U_ROUND, OTL_UG_ZERO)
OTL_UNARY_OP(Sign, "Sign", "", 9, 22, OTL_U_SIGN, OTL_UG_ZERO)
OTL_UNARY_OP(Sin, "Sin", "", 7, 22, OTL_U_SIN, OTL_UG_RULE)
OTL_UNARY_OP(Cos, "Cos", "", 7, 22, OTL_U_COS, OTL_UG_RULE)
OTL_UNARY_OP(Tan, "Tan", "", 7, 22, OTL_U_TAN, OTL_UG_RULE)
OTL_UNARY_OP(Asin, "Asin", "", 7, 22, OTL_U_ASIN, OTL_UG_RULE)
OTL_UNARY_OP(Acos, "Acos", "", 7, 22, OTL_U_ACOS, OTL_UG_RULE)
OTL_UNARY_OP(Atan, "Atan", "", 7, 22, OTL_U_ATAN, OTL_UG_RULE)
OTL_UNARY_OP(Sinh, "Sinh", "", 9, 22, OTL_U_SINH, OTL_UG_RULE)
OTL_UNARY_OP(Cosh, "Cosh", "", 9, 22, OTL_U_COSH, OTL_UG_RULE)
OTL_UNARY_OP(Asinh, "Asinh", "", 9, 22, OTL_U_ASINH, OTL_UG_RULE)
OTL_UNARY_OP(Acosh, "Acosh", "", 9, 22, OTL_U_ACOSH, OTL_UG_RULE)
OTL_UNARY_OP(Atanh, "Atanh", "", 9, 22, OTL_U_ATANH, OTL_UG_RULE)
OTL_UNARY_OP(IsNaN, "IsNaN", "", 9, 22, OTL_U_ISNAN, OTL_UG_ZERO)
OTL_UNARY_OP(IsInf, "IsInf", "", 10, 22, OTL_U_ISINF, OTL_UG_ZERO)
