/* elementwise_cast.c - Cast and CastLike between the numeric dtypes, float16, bfloat16 and bool.
 * Float to integer truncates toward zero (NaN gives 0, values beyond int64 saturate, then the
 * value wraps to the target width as in C); float16/bfloat16 round to nearest even. Strings,
 * float8 and 4-bit types are refused. Differentiable input: input 0; the gradient is cast back
 * to its dtype between floating-point dtypes and is zero to or from integers and bool:
 * onnx_tl.CastGrad(dY, DTypeOf(X)), DTypeOf being folded at plan time (X is not kept). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/broadcast.h"

typedef struct cast_ctx {
    int from, to;
    const void *x;
    void *y;
} cast_ctx;

static int castable(int dt)
{
    switch (dt) {
    case OTL_DTYPE_FLOAT: case OTL_DTYPE_DOUBLE: case OTL_DTYPE_FLOAT16: case OTL_DTYPE_BFLOAT16:
    case OTL_DTYPE_INT8: case OTL_DTYPE_INT16: case OTL_DTYPE_INT32: case OTL_DTYPE_INT64:
    case OTL_DTYPE_UINT8: case OTL_DTYPE_UINT16: case OTL_DTYPE_UINT32: case OTL_DTYPE_UINT64:
    case OTL_DTYPE_BOOL:
        return 1;
    default:
        return 0;
    }
}

static inline int64_t f2i(double v)
{
    if (v != v)
        return 0;
    if (v >= 9223372036854775807.0)
        return INT64_MAX;
    if (v <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

static inline uint64_t f2u(double v)
{
    if (v != v)
        return 0;
    if (v >= 18446744073709551615.0)
        return UINT64_MAX;
    if (v < 0)
        return (uint64_t)f2i(v);
    return (uint64_t)v;
}

/* conversions by kind of source (F float, I integer or bool) and target (F, I, U uint64, B bool) */
#define CV_FF(v, D) ((D)(v))
#define CV_FI(v, D) ((D)f2i(v))
#define CV_FU(v, D) ((D)f2u(v))
#define CV_FB(v, D) ((D)((v) != 0))
#define CV_IF(v, D) ((D)(v))
#define CV_II(v, D) ((D)(v))
#define CV_IU(v, D) ((D)(v))
#define CV_IB(v, D) ((D)((v) != 0))

/* X(dtype, C type, kind as source, kind as target) for the natively typed dtypes */
#define CAST_TYPES(X)                                                                             \
    X(OTL_DTYPE_FLOAT, float, F, F)                                                               \
    X(OTL_DTYPE_DOUBLE, double, F, F)                                                             \
    X(OTL_DTYPE_INT8, int8_t, I, I)                                                               \
    X(OTL_DTYPE_INT16, int16_t, I, I)                                                             \
    X(OTL_DTYPE_INT32, int32_t, I, I)                                                             \
    X(OTL_DTYPE_INT64, int64_t, I, I)                                                             \
    X(OTL_DTYPE_UINT8, uint8_t, I, I)                                                             \
    X(OTL_DTYPE_UINT16, uint16_t, I, I)                                                           \
    X(OTL_DTYPE_UINT32, uint32_t, I, I)                                                           \
    X(OTL_DTYPE_UINT64, uint64_t, I, U)                                                           \
    X(OTL_DTYPE_BOOL, uint8_t, I, B)

#define CAST_LOOP(S, KS, D, KD)                                                                   \
    do {                                                                                          \
        const S *x_ = (const S *)c->x;                                                            \
        D *y_ = (D *)c->y;                                                                        \
        for (int64_t i = start; i < end; i++)                                                     \
            y_[i] = CV_##KS##KD(x_[i], D);                                                        \
    } while (0)

/* one function per target D: a switch over the source dtype */
#define DEF_CAST_TO(NAME, D, KD)                                                                  \
    static int NAME(const cast_ctx *c, int64_t start, int64_t end)                                \
    {                                                                                             \
        typedef D D_;                                                                             \
        switch (c->from) {                                                                        \
            CAST_TYPES(SRC_CASE_##KD)                                                             \
        default: return 0;                                                                        \
        }                                                                                         \
    }

/* the target kind has to be a literal token for CV_##KS##KD: one SRC_CASE per target kind */
#define SRC_CASE_F(DT, S, KS, K2) case DT: CAST_LOOP(S, KS, D_, F); return 1;
#define SRC_CASE_I(DT, S, KS, K2) case DT: CAST_LOOP(S, KS, D_, I); return 1;
#define SRC_CASE_U(DT, S, KS, K2) case DT: CAST_LOOP(S, KS, D_, U); return 1;
#define SRC_CASE_B(DT, S, KS, K2) case DT: CAST_LOOP(S, KS, D_, B); return 1;

DEF_CAST_TO(to_f32, float, F)
DEF_CAST_TO(to_f64, double, F)
DEF_CAST_TO(to_i8, int8_t, I)
DEF_CAST_TO(to_i16, int16_t, I)
DEF_CAST_TO(to_i32, int32_t, I)
DEF_CAST_TO(to_i64, int64_t, I)
DEF_CAST_TO(to_u8, uint8_t, I)
DEF_CAST_TO(to_u16, uint16_t, I)
DEF_CAST_TO(to_u32, uint32_t, I)
DEF_CAST_TO(to_u64, uint64_t, U)
DEF_CAST_TO(to_bool, uint8_t, B)

static int cast_typed(const cast_ctx *c, int64_t start, int64_t end)
{
    switch (c->to) {
    case OTL_DTYPE_FLOAT: return to_f32(c, start, end);
    case OTL_DTYPE_DOUBLE: return to_f64(c, start, end);
    case OTL_DTYPE_INT8: return to_i8(c, start, end);
    case OTL_DTYPE_INT16: return to_i16(c, start, end);
    case OTL_DTYPE_INT32: return to_i32(c, start, end);
    case OTL_DTYPE_INT64: return to_i64(c, start, end);
    case OTL_DTYPE_UINT8: return to_u8(c, start, end);
    case OTL_DTYPE_UINT16: return to_u16(c, start, end);
    case OTL_DTYPE_UINT32: return to_u32(c, start, end);
    case OTL_DTYPE_UINT64: return to_u64(c, start, end);
    case OTL_DTYPE_BOOL: return to_bool(c, start, end);
    default: return 0;
    }
}

/* float32 <-> float16 / bfloat16 without branches (vectorizable), rounding to nearest even;
 * the float-to-half scheme is F. Giesen's float_to_half_fast3_rtne. */
static inline float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t f2u32(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float half_to_f32(uint16_t h)
{
    uint32_t o = ((uint32_t)h & 0x7fffu) << 13, e = o & (0x7c00u << 13);
    o += (uint32_t)(127 - 15) << 23;
    uint32_t inf = 0u - (uint32_t)(e == (0x7c00u << 13)), den = 0u - (uint32_t)(e == 0);
    o += inf & ((uint32_t)(128 - 16) << 23);
    uint32_t d = f2u32(u2f(o + (1u << 23)) - u2f(113u << 23)); /* subnormal: renormalize */
    o = (d & den) | (o & ~den);
    return u2f(o | (((uint32_t)h & 0x8000u) << 16));
}

static inline uint16_t f32_to_half(float f)
{
    uint32_t x = f2u32(f), sign = x & 0x80000000u;
    x ^= sign;
    uint32_t special = x > 0x7f800000u ? 0x7e00u : 0x7c00u;                 /* NaN / Inf */
    uint32_t sub = f2u32(u2f(x) + u2f(126u << 23)) - (126u << 23);         /* result subnormal */
    uint32_t norm = (x + ((uint32_t)(15 - 127) << 23) + 0xfffu + ((x >> 13) & 1u)) >> 13;
    uint32_t is_big = 0u - (uint32_t)(x >= 0x47800000u), is_sub = 0u - (uint32_t)(x < 0x38800000u);
    uint32_t o = (special & is_big) | (~is_big & ((sub & is_sub) | (norm & ~is_sub)));
    return (uint16_t)(o | (sign >> 16));
}

static inline uint16_t f32_to_bf16(float f)
{
    uint32_t u = f2u32(f);
    uint32_t nan = 0u - (uint32_t)((u & 0x7fffffffu) > 0x7f800000u);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)((((u >> 16) | 0x40u) & nan) | (r & ~nan)); /* NaN stays (quiet) NaN */
}

static int cast_half(const cast_ctx *c, int64_t start, int64_t end)
{
    const float *xf = c->x;
    const uint16_t *xh = c->x;
    float *yf = c->y;
    uint16_t *yh = c->y;
    if (c->from == OTL_DTYPE_FLOAT && c->to == OTL_DTYPE_FLOAT16) {
        #pragma omp simd
        for (int64_t i = start; i < end; i++)
            yh[i] = f32_to_half(xf[i]);
    } else if (c->from == OTL_DTYPE_FLOAT16 && c->to == OTL_DTYPE_FLOAT) {
        #pragma omp simd
        for (int64_t i = start; i < end; i++)
            yf[i] = half_to_f32(xh[i]);
    } else if (c->from == OTL_DTYPE_FLOAT && c->to == OTL_DTYPE_BFLOAT16) {
        #pragma omp simd
        for (int64_t i = start; i < end; i++)
            yh[i] = f32_to_bf16(xf[i]);
    } else if (c->from == OTL_DTYPE_BFLOAT16 && c->to == OTL_DTYPE_FLOAT) {
        #pragma omp simd
        for (int64_t i = start; i < end; i++)
            yf[i] = u2f((uint32_t)xh[i] << 16);
    } else {
        return 0;
    }
    return 1;
}

/* float16 / bfloat16 on either side */
static void cast_generic(const cast_ctx *c, int64_t start, int64_t end)
{
    int from_f = otl_dtype_is_float(c->from), to_f = otl_dtype_is_float(c->to);
    for (int64_t i = start; i < end; i++) {
        if (from_f) {
            double v = otl_get_f(c->x, c->from, i);
            if (to_f)
                otl_set_f(c->y, c->to, i, v);
            else if (c->to == OTL_DTYPE_BOOL)
                otl_set_i(c->y, c->to, i, v != 0);
            else if (c->to == OTL_DTYPE_UINT64)
                ((uint64_t *)c->y)[i] = f2u(v);
            else
                otl_set_i(c->y, c->to, i, f2i(v));
        } else { /* integer or bool to float16 / bfloat16 */
            double v = c->from == OTL_DTYPE_UINT64 ? (double)((const uint64_t *)c->x)[i]
                                                   : (double)otl_get_i(c->x, c->from, i);
            otl_set_f(c->y, c->to, i, v);
        }
    }
}

static void cast_range(void *ctx, int64_t start, int64_t end)
{
    const cast_ctx *c = ctx;
    if (!cast_typed(c, start, end) && !cast_half(c, start, end))
        cast_generic(c, start, end);
}

static otl_status cast_setup(otl_kctx *k, int to)
{
    otl_status st = otl_check_in(k, 0, NULL);
    if (st)
        return st;
    int from = k->in[0]->dtype;
    if (!castable(from) || !castable(to))
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "cast from %s to %s is not supported",
                         otl_dtype_name(from), otl_dtype_name(to));
    return otl_rt_set(k, k->out[0], to, k->in[0]->rank, k->in[0]->dims);
}

static otl_status cast_infer(otl_kctx *k)
{
    int64_t to;
    otl_status st = otl_attr_int(k, "to", -1, &to);
    if (st)
        return st;
    if (!otl_node_attr(k->node, "to"))
        return otl_kfail(k, OTL_ERR_INPUT, "attribute 'to' is required");
    if (to <= 0 || to >= OTL_DTYPE_COUNT_)
        return otl_kfail(k, OTL_ERR_INPUT, "attribute 'to' = %lld is not a known dtype", (long long)to);
    return cast_setup(k, (int)to);
}

static otl_status cast_like_infer(otl_kctx *k)
{
    otl_status st = otl_check_in(k, 1, NULL);
    if (st)
        return st;
    return cast_setup(k, k->in[1]->dtype);
}

static otl_status cast_forward(otl_kctx *k)
{
    const otl_rt *x = k->in[0];
    otl_rt *y = k->out[0];
    if (y->numel == 0)
        return OTL_OK;
    if (x->dtype == y->dtype) {
        memcpy(y->data, x->data, y->nbytes);
        return OTL_OK;
    }
    cast_ctx c = {.from = x->dtype, .to = y->dtype, .x = x->data, .y = y->data};
    otl_parallel_range(y->numel, 16384, cast_range, &c);
    return OTL_OK;
}

/* The rule of Cast and CastLike (input 0): rules see names, not dtypes, so X's dtype reaches
 * CastGrad through DTypeOf(X), which the planner folds. */
static otl_status cast_grad(otl_gctx *c)
{
    if (!c->need[0])
        return OTL_OK;
    const char *x = c->node->inputs[0];
    const char *like = otl_gemit1(c, OTL_GRAD_DOMAIN, "DTypeOf", 1, &x, NULL);
    const char *in[2] = {c->dy[0], like};
    otl_grad_set(c, 0, like ? otl_gemit1(c, OTL_GRAD_DOMAIN, "CastGrad", 2, in, NULL) : NULL);
    return OTL_OK;
}

/* Cast-19 adds `saturate` (float8 only) and float8 dtypes, Cast-21 4-bit dtypes: refused above. */
const otl_op otl_op_Cast = {
    .op_type = "Cast", .domain = "", .since = 6, .until = 21,
    .infer = cast_infer, .forward = cast_forward, .grad_inputs = 1, .grad = cast_grad,
};

const otl_op otl_op_CastLike = {
    .op_type = "CastLike", .domain = "", .since = 15, .until = 21,
    .infer = cast_like_infer, .forward = cast_forward, .grad_inputs = 1, .grad = cast_grad,
};

/* ---------------------------------------------------------------- private backward ops */

/* DTypeOf(X) -> an empty tensor (shape [0]) of X's dtype. Depends on X's dtype only, so the
 * planner evaluates it at plan time (OTL_OPF_SHAPE_ONLY) and X's buffer is not kept for it. */
static otl_status dtype_of_infer(otl_kctx *k)
{
    otl_status st = otl_check_in(k, 0, NULL);
    int64_t zero = 0;
    return st ? st : otl_rt_set(k, k->out[0], k->in[0]->dtype, 1, &zero);
}

static otl_status dtype_of_forward(otl_kctx *k)
{
    (void)k;
    return OTL_OK;
}

const otl_op otl_op_DTypeOf = {
    .op_type = "DTypeOf", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .flags = OTL_OPF_SHAPE_ONLY | OTL_OPF_ANY_LAYOUT, .infer = dtype_of_infer, .forward = dtype_of_forward,
};

/* CastGrad(dY, like) -> dY cast to like's dtype when both are floating point; zeros of like's
 * dtype (in dY's shape) when either is an integer or bool: no gradient crosses such a cast. */
static otl_status cast_grad_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, NULL)) || (st = otl_check_in(k, 1, NULL)))
        return st;
    int from = k->in[0]->dtype, to = k->in[1]->dtype;
    if (!castable(from) || !castable(to))
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "gradient cast from %s to %s is not supported",
                         otl_dtype_name(from), otl_dtype_name(to));
    return otl_rt_set(k, k->out[0], to, k->in[0]->rank, k->in[0]->dims);
}

static otl_status cast_grad_forward(otl_kctx *k)
{
    const otl_rt *dy = k->in[0];
    otl_rt *dx = k->out[0];
    if (!otl_dtype_is_float(dy->dtype) || !otl_dtype_is_float(dx->dtype)) {
        memset(dx->data, 0, dx->nbytes);
        return OTL_OK;
    }
    return cast_forward(k);
}

const otl_op otl_op_CastGrad = {
    .op_type = "CastGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = cast_grad_infer, .forward = cast_grad_forward,
};
