/* elementwise.c - arithmetic with multidirectional broadcasting: Add, Sub, Mul, Div, Pow, Mod,
 * BitShift (binary) and Max, Min, Sum, Mean (variadic), on every numeric dtype. Add, Sub, Mul
 * and Div accept oneDNN blocked layouts (oneDNN binary where it fits, else plain copies).
 * Differentiable inputs: both operands of Add/Sub/Mul/Div/Pow and all inputs of Max/Min/Sum/Mean
 * (gradients reduced over broadcast axes; rules at the end, backward kernels PowGrad, MaxMinGrad
 * and Scale in ops/elementwise_grad.c); none of Mod and BitShift (no rule). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/broadcast.h"

enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_MOD, OP_FMOD, OP_MAX, OP_MIN, OP_SHL, OP_SHR, OP_COPY };

/* `omp simd` asks for vectorization; loops that call libm (powf, fmodf, erff...) stay scalar,
 * which clang would report as a failed transformation */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

/* One pass over the output: z = a op b, with a and b taken from inputs ia, ib of the broadcast. */
typedef struct arith_stage {
    otl_bcast b;
    int op;
    int ia, ib;
    const otl_rt *a, *bv;      /* a == NULL: a is the output itself (variadic accumulation) */
} arith_stage;

typedef struct arith_state {
    int n_stages;
    arith_stage *stages;       /* (n_stages) */
    int mean_n;                /* Mean: divide by this at the end (0: no) */
    int pow_special;           /* f32 Pow by a scalar exponent: checked for 2, 3, 0.5, 1 in forward */
    /* Add/Sub/Mul/Div with an input in a oneDNN blocked layout */
    int bin_src0;              /* >= 0: oneDNN binary with this input as src0 (full shape, blocked) */
    dnnl_memory_desc_t bin_md1; /* the other input's descriptor (rank-padded plain, or blocked) */
    dnnl_primitive_t bin;
    dnnl_memory_t m0, m1, mdst;
    otl_plain pin[2];          /* otherwise: plain copies of the blocked inputs */
} arith_state;

typedef struct arith_ctx {
    int op, dt, dtb;           /* dtb: dtype of b (differs from dt only for Pow) */
    char *z;
    const char *a, *b;
    int ia, ib;
    int64_t sa, sb;
    int err;                   /* integer division by zero seen */
} arith_ctx;

/* ---------------------------------------------------------------- typed runs */

/* z[i] = EXPR(x, y) over a run, specialised on which operands advance. */
#define RUN(T, TB, EXPR)                                                                          \
    do {                                                                                          \
        T *z_ = (T *)c->z + o;                                                                    \
        const T *a_ = (const T *)c->a + off[c->ia];                                               \
        const TB *b_ = (const TB *)c->b + off[c->ib];                                             \
        if (c->sa && c->sb) {                                                                     \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                 \
                const T x = a_[i];                                                                \
                const TB y = b_[i];                                                               \
                z_[i] = (EXPR);                                                                   \
            }                                                                                     \
        } else if (c->sa) {                                                                       \
            const TB y = b_[0];                                                                   \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                 \
                const T x = a_[i];                                                                \
                z_[i] = (EXPR);                                                                   \
            }                                                                                     \
        } else if (c->sb) {                                                                       \
            const T x = a_[0];                                                                    \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                 \
                const TB y = b_[i];                                                               \
                z_[i] = (EXPR);                                                                   \
            }                                                                                     \
        } else {                                                                                  \
            const T x = a_[0];                                                                    \
            const TB y = b_[0];                                                                   \
            const T v_ = (EXPR);                                                                  \
            for (int64_t i = 0; i < n; i++)                                                       \
                z_[i] = v_;                                                                       \
        }                                                                                         \
    } while (0)

/* NaN-propagating max/min as numpy's maximum/minimum. */
#define FMAX(x, y) (((x) >= (y) || (x) != (x)) ? (x) : (y))
#define FMIN(x, y) (((x) <= (y) || (x) != (x)) ? (x) : (y))

static void row_f32(void *ctx, int64_t o, const int64_t *off, int64_t n)
{
    arith_ctx *c = ctx;
    switch (c->op) {
    case OP_ADD: RUN(float, float, x + y); break;
    case OP_SUB: RUN(float, float, x - y); break;
    case OP_MUL: RUN(float, float, x * y); break;
    case OP_DIV: RUN(float, float, x / y); break;
    case OP_POW: RUN(float, float, powf(x, y)); break;
    case OP_FMOD: RUN(float, float, fmodf(x, y)); break;
    case OP_MAX: RUN(float, float, FMAX(x, y)); break;
    case OP_MIN: RUN(float, float, FMIN(x, y)); break;
    case OP_COPY: RUN(float, float, ((void)x, y)); break;
    }
}

static void row_f64(void *ctx, int64_t o, const int64_t *off, int64_t n)
{
    arith_ctx *c = ctx;
    switch (c->op) {
    case OP_ADD: RUN(double, double, x + y); break;
    case OP_SUB: RUN(double, double, x - y); break;
    case OP_MUL: RUN(double, double, x * y); break;
    case OP_DIV: RUN(double, double, x / y); break;
    case OP_POW: RUN(double, double, pow(x, y)); break;
    case OP_FMOD: RUN(double, double, fmod(x, y)); break;
    case OP_MAX: RUN(double, double, FMAX(x, y)); break;
    case OP_MIN: RUN(double, double, FMIN(x, y)); break;
    case OP_COPY: RUN(double, double, ((void)x, y)); break;
    }
}

/* Integer power with wrap-around; negative exponents truncate 1/x^e toward zero. */
static int64_t ipow(int64_t x, int64_t e)
{
    if (e < 0)
        return x == 1 ? 1 : x == -1 ? ((e & 1) ? -1 : 1) : 0;
    uint64_t r = 1, b = (uint64_t)x;
    while (e) {
        if (e & 1)
            r *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)r;
}

/* Integer kernels: wrap-around arithmetic through the unsigned type U, division truncating
 * toward zero (C), Mod with the divisor's sign unless fmod; division by zero is reported. */
#define INT_DIV_S(T, U, x, y) ((y) == 0 ? (c->err = 1, (T)0) : (y) == (T)-1 ? (T)(0 - (U)(x)) : (T)((x) / (y)))
#define INT_DIV_U(T, U, x, y) ((y) == 0 ? (c->err = 1, (T)0) : (T)((x) / (y)))
#define INT_FMOD_S(T, x, y) ((y) == 0 ? (c->err = 1, (T)0) : (y) == (T)-1 ? (T)0 : (T)((x) % (y)))
#define INT_MOD_S(T, x, y) ((y) == 0 ? (c->err = 1, (T)0) : (y) == (T)-1 ? (T)0 : mod_py_##T((x), (y)))
#define INT_MOD_U(T, x, y) ((y) == 0 ? (c->err = 1, (T)0) : (T)((x) % (y)))

#define DEF_MOD_PY(T)                                                                             \
    static inline T mod_py_##T(T x, T y)                                                          \
    {                                                                                             \
        T r = (T)(x % y);                                                                         \
        return (T)((r != 0 && ((r < 0) != (y < 0))) ? r + y : r);                                 \
    }
DEF_MOD_PY(int8_t)
DEF_MOD_PY(int16_t)
DEF_MOD_PY(int32_t)
DEF_MOD_PY(int64_t)

#define DEF_ROW_INT(NAME, T, U, DIV, MOD, FMOD)                                                  \
    static void NAME(void *ctx, int64_t o, const int64_t *off, int64_t n)                         \
    {                                                                                             \
        arith_ctx *c = ctx;                                                                       \
        switch (c->op) {                                                                          \
        case OP_ADD: RUN(T, T, (T)((U)x + (U)y)); break;                                          \
        case OP_SUB: RUN(T, T, (T)((U)x - (U)y)); break;                                          \
        case OP_MUL: RUN(T, T, (T)((U)x * (U)y)); break;                                          \
        case OP_DIV: RUN(T, T, DIV(T, U, x, y)); break;                                           \
        case OP_POW: RUN(T, T, (T)ipow((int64_t)x, (int64_t)y)); break;                           \
        case OP_MOD: RUN(T, T, MOD(T, x, y)); break;                                              \
        case OP_FMOD: RUN(T, T, FMOD(T, x, y)); break;                                            \
        case OP_MAX: RUN(T, T, x >= y ? x : y); break;                                            \
        case OP_MIN: RUN(T, T, x <= y ? x : y); break;                                            \
        case OP_SHL: RUN(T, T, (U)y >= sizeof(T) * 8 ? (T)0 : (T)((U)x << (U)y)); break;          \
        case OP_SHR: RUN(T, T, (U)y >= sizeof(T) * 8 ? (T)0 : (T)((U)x >> (U)y)); break;          \
        case OP_COPY: RUN(T, T, ((void)x, y)); break;                                             \
        }                                                                                         \
    }

/* U: unsigned type of at least int's width, so that nothing is promoted to signed int */
DEF_ROW_INT(row_i8, int8_t, uint32_t, INT_DIV_S, INT_MOD_S, INT_FMOD_S)
DEF_ROW_INT(row_i16, int16_t, uint32_t, INT_DIV_S, INT_MOD_S, INT_FMOD_S)
DEF_ROW_INT(row_i32, int32_t, uint32_t, INT_DIV_S, INT_MOD_S, INT_FMOD_S)
DEF_ROW_INT(row_i64, int64_t, uint64_t, INT_DIV_S, INT_MOD_S, INT_FMOD_S)
DEF_ROW_INT(row_u8, uint8_t, uint32_t, INT_DIV_U, INT_MOD_U, INT_MOD_U)
DEF_ROW_INT(row_u16, uint16_t, uint32_t, INT_DIV_U, INT_MOD_U, INT_MOD_U)
DEF_ROW_INT(row_u32, uint32_t, uint32_t, INT_DIV_U, INT_MOD_U, INT_MOD_U)
DEF_ROW_INT(row_u64, uint64_t, uint64_t, INT_DIV_U, INT_MOD_U, INT_MOD_U)

static double op_f64(int op, double x, double y)
{
    switch (op) {
    case OP_ADD: return x + y;
    case OP_SUB: return x - y;
    case OP_MUL: return x * y;
    case OP_DIV: return x / y;
    case OP_POW: return pow(x, y);
    case OP_FMOD: return fmod(x, y);
    case OP_MAX: return FMAX(x, y);
    case OP_MIN: return FMIN(x, y);
    default: return y; /* OP_COPY */
    }
}

/* float16 / bfloat16 (computed in double, rounded once) and Pow with mixed dtypes. */
static void row_generic(void *ctx, int64_t o, const int64_t *off, int64_t n)
{
    arith_ctx *c = ctx;
    int afloat = otl_dtype_is_float(c->dt), bfloat = otl_dtype_is_float(c->dtb);
    for (int64_t i = 0; i < n; i++) {
        int64_t ja = off[c->ia] + i * c->sa, jb = off[c->ib] + i * c->sb;
        if (afloat) {
            double y = otl_get_f(c->b, c->dtb, jb);
            otl_set_f(c->z, c->dt, o + i, op_f64(c->op, otl_get_f(c->a, c->dt, ja), y));
        } else if (bfloat) { /* integer base, float exponent (Pow) */
            double r = pow((double)otl_get_i(c->a, c->dt, ja), otl_get_f(c->b, c->dtb, jb));
            otl_set_i(c->z, c->dt, o + i, isfinite(r) && fabs(r) < 9.2e18 ? (int64_t)r : 0);
        } else { /* integer base and exponent (Pow) */
            otl_set_i(c->z, c->dt, o + i, ipow(otl_get_i(c->a, c->dt, ja), otl_get_i(c->b, c->dtb, jb)));
        }
    }
}

static otl_bcast_row_fn row_for(int dt, int dtb)
{
    if (dt != dtb)
        return row_generic;
    switch (dt) {
    case OTL_DTYPE_FLOAT: return row_f32;
    case OTL_DTYPE_DOUBLE: return row_f64;
    case OTL_DTYPE_INT8: return row_i8;
    case OTL_DTYPE_INT16: return row_i16;
    case OTL_DTYPE_INT32: return row_i32;
    case OTL_DTYPE_INT64: return row_i64;
    case OTL_DTYPE_UINT8: return row_u8;
    case OTL_DTYPE_UINT16: return row_u16;
    case OTL_DTYPE_UINT32: return row_u32;
    case OTL_DTYPE_UINT64: return row_u64;
    default: return row_generic;
    }
}

/* ---------------------------------------------------------------- infer */

#define ALL_NUMERIC                                                                                \
    OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_BFLOAT16, OTL_DTYPE_INT64,       \
        OTL_DTYPE_INT32, OTL_DTYPE_INT16, OTL_DTYPE_INT8, OTL_DTYPE_UINT64, OTL_DTYPE_UINT32,       \
        OTL_DTYPE_UINT16, OTL_DTYPE_UINT8
static const int numeric[] = {ALL_NUMERIC, 0};
static const int floats[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_BFLOAT16, 0};
static const int pow_base[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_BFLOAT16,
                               OTL_DTYPE_INT64, OTL_DTYPE_INT32, 0};
static const int unsigned_ints[] = {OTL_DTYPE_UINT8, OTL_DTYPE_UINT16, OTL_DTYPE_UINT32, OTL_DTYPE_UINT64, 0};

static otl_status state_new(otl_kctx *k, int n_stages, arith_state **out)
{
    arith_state *s = calloc(1, sizeof *s);
    if (s)
        s->stages = calloc((size_t)n_stages, sizeof *s->stages);
    if (!s || !s->stages) {
        free(s);
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    }
    s->n_stages = n_stages;
    s->bin_src0 = -1;
    k->state = s;
    *out = s;
    return OTL_OK;
}

static void arith_release(otl_kctx *k)
{
    arith_state *s = k->state;
    if (!s)
        return;
    free(s->stages);
    if (s->bin)
        dnnl_primitive_destroy(s->bin);
    if (s->m0)
        dnnl_memory_destroy(s->m0);
    if (s->m1)
        dnnl_memory_destroy(s->m1);
    if (s->mdst)
        dnnl_memory_destroy(s->mdst);
    otl_plain_release(&s->pin[0]);
    otl_plain_release(&s->pin[1]);
}

/* Blocked inputs (only Add/Sub/Mul/Div see them): oneDNN binary when one float32 input is blocked
 * with the output's shape and the other has the same layout or is plain and broadcasts (binary's
 * src1 broadcasting); the output then keeps the layout. Otherwise the C path on plain copies. */
static otl_status blocked_setup(otl_kctx *k, arith_state *s, int op)
{
    const otl_rt *in[2] = {k->in[0], k->in[1]};
    const otl_bcast *b = &s->stages[0].b;
    if (!in[0]->blocked && !in[1]->blocked)
        return OTL_OK;
    if (in[0]->dtype != OTL_DTYPE_FLOAT || in[1]->dtype != OTL_DTYPE_FLOAT)
        return OTL_OK;
    int commutes = op == OP_ADD || op == OP_MUL, src0 = -1;
    if (in[0]->blocked && b->same[0])
        src0 = 0;
    else if (commutes && in[1]->blocked && b->same[1])
        src0 = 1;
    if (src0 < 0)
        return OTL_OK;
    const otl_rt *o = in[1 - src0];
    if (o->blocked) {
        if (!b->same[1 - src0] || !dnnl_memory_desc_equal(&o->md, &in[src0]->md))
            return OTL_OK;
        s->bin_md1 = o->md;
    } else {
        otl_rt pad = *o; /* the other input's dims padded to the output's rank */
        pad.rank = b->rank;
        for (int d = 0; d < b->rank; d++)
            pad.dims[d] = b->strides[1 - src0][d] ? b->dims[d] : 1;
        otl_status st = otl_md_plain(k, &pad, &s->bin_md1);
        if (st)
            return st;
    }
    s->bin_src0 = src0;
    return otl_rt_set_md(k, k->out[0], OTL_DTYPE_FLOAT, b->rank, b->dims, &in[src0]->md);
}

static otl_status arith_prepare(otl_kctx *k)
{
    arith_state *s = k->state;
    otl_status st;
    if (s->bin_src0 < 0) {
        for (int i = 0; i < 2 && i < k->n_in; i++)
            if (k->in[i] && k->in[i]->blocked && (st = otl_plain_prepare(k, k->in[i], &s->pin[i])))
                return st;
        return OTL_OK;
    }
    static const dnnl_alg_kind_t algs[] = {[OP_ADD] = dnnl_binary_add, [OP_SUB] = dnnl_binary_sub,
                                           [OP_MUL] = dnnl_binary_mul, [OP_DIV] = dnnl_binary_div};
    const dnnl_memory_desc_t *md0 = &k->in[s->bin_src0]->md;
    dnnl_binary_desc_t d;
    dnnl_primitive_desc_t pd;
    if ((st = otl_dnnl_check(k, dnnl_binary_desc_init(&d, algs[s->stages[0].op], md0, &s->bin_md1, md0), "binary")))
        return st;
    if ((st = otl_dnnl_check(k, otl_pd_create(&pd, &d, NULL, k->eng->eng, NULL), "binary")))
        return st;
    st = otl_dnnl_primitive(k, pd, &s->bin, "binary");
    dnnl_primitive_desc_destroy(pd);
    if (st)
        return st;
    if ((st = otl_dnnl_memory(k, md0, NULL, &s->m0)) || (st = otl_dnnl_memory(k, &s->bin_md1, NULL, &s->m1)) ||
        (st = otl_dnnl_memory(k, md0, NULL, &s->mdst)))
        return st;
    return OTL_OK;
}

/* Binary op: check dtypes, broadcast, set the output. */
static otl_status binary_setup(otl_kctx *k, int op, const int *dtypes, const int *dtypes_b)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, dtypes)) || (st = otl_check_in(k, 1, dtypes_b ? dtypes_b : dtypes)))
        return st;
    if (!dtypes_b && k->in[0]->dtype != k->in[1]->dtype)
        return otl_kfail(k, OTL_ERR_INPUT, "inputs have different dtypes (%s and %s)",
                         otl_dtype_name(k->in[0]->dtype), otl_dtype_name(k->in[1]->dtype));
    arith_state *s;
    if ((st = state_new(k, 1, &s)))
        return st;
    arith_stage *g = &s->stages[0];
    if ((st = otl_bcast_init_binary(k, &g->b, k->in[0], k->in[1])))
        return st;
    g->op = op;
    g->ia = 0;
    g->ib = 1;
    g->a = k->in[0];
    g->bv = k->in[1];
    if ((st = otl_rt_set(k, k->out[0], k->in[0]->dtype, g->b.rank, g->b.dims)))
        return st;
    return blocked_setup(k, s, op);
}

static otl_status add_infer(otl_kctx *k) { return binary_setup(k, OP_ADD, numeric, NULL); }
static otl_status sub_infer(otl_kctx *k) { return binary_setup(k, OP_SUB, numeric, NULL); }
static otl_status mul_infer(otl_kctx *k) { return binary_setup(k, OP_MUL, numeric, NULL); }
static otl_status div_infer(otl_kctx *k) { return binary_setup(k, OP_DIV, numeric, NULL); }

static otl_status pow_infer(otl_kctx *k)
{
    otl_status st;
    /* before opset 12 the exponent has the base's dtype */
    if ((st = binary_setup(k, OP_POW, pow_base, k->opset >= 12 ? numeric : NULL)))
        return st;
    arith_state *s = k->state;
    s->pow_special = k->in[0]->dtype == OTL_DTYPE_FLOAT && k->in[1]->dtype == OTL_DTYPE_FLOAT &&
                     k->in[1]->numel == 1 && k->in[0]->numel == k->out[0]->numel;
    return OTL_OK;
}

static otl_status mod_infer(otl_kctx *k)
{
    int64_t fm;
    otl_status st = otl_attr_int(k, "fmod", 0, &fm);
    if (st)
        return st;
    if (fm != 0 && fm != 1)
        return otl_kfail(k, OTL_ERR_INPUT, "fmod must be 0 or 1, got %lld", (long long)fm);
    if ((st = binary_setup(k, fm ? OP_FMOD : OP_MOD, numeric, NULL)))
        return st;
    if (!fm && otl_dtype_is_float(k->in[0]->dtype))
        return otl_kfail(k, OTL_ERR_INPUT, "fmod must be 1 for floating-point inputs (%s)",
                         otl_dtype_name(k->in[0]->dtype));
    return OTL_OK;
}

static otl_status bitshift_infer(otl_kctx *k)
{
    const char *dir;
    otl_status st = otl_attr_str(k, "direction", NULL, &dir);
    if (st)
        return st;
    if (!dir || (strcmp(dir, "LEFT") != 0 && strcmp(dir, "RIGHT") != 0))
        return otl_kfail(k, OTL_ERR_INPUT, "direction must be \"LEFT\" or \"RIGHT\", got %s%s%s",
                         dir ? "\"" : "", dir ? dir : "nothing", dir ? "\"" : "");
    return binary_setup(k, strcmp(dir, "LEFT") == 0 ? OP_SHL : OP_SHR, unsigned_ints, NULL);
}

/* Variadic: the output has the broadcast shape of all inputs; stage 0 writes out = in0 op in1
 * (or a copy of in0), stage j >= 1 accumulates out = out op in(j+1). */
static otl_status variadic_setup(otl_kctx *k, int op, const int *dtypes, int mean)
{
    otl_status st;
    int n = k->n_in;
    if (n < 1)
        return otl_kfail(k, OTL_ERR_INPUT, "at least one input is required");
    for (int i = 0; i < n; i++) {
        if ((st = otl_check_in(k, i, dtypes)))
            return st;
        if (k->in[i]->dtype != k->in[0]->dtype)
            return otl_kfail(k, OTL_ERR_INPUT, "inputs have different dtypes (%s and %s)",
                             otl_dtype_name(k->in[0]->dtype), otl_dtype_name(k->in[i]->dtype));
    }
    /* the output shape */
    int rank = 0;
    int64_t dims[OTL_MAX_RANK];
    for (int i = 0; i < n; i++) {
        otl_bcast b;
        int ranks[2] = {rank, k->in[i]->rank};
        const int64_t *d[2] = {dims, k->in[i]->dims};
        const char *names[2] = {k->in[0]->name, k->in[i]->name};
        if ((st = otl_bcast_init_dims(k, &b, 2, ranks, d, names)))
            return st;
        rank = b.rank;
        memcpy(dims, b.dims, sizeof dims);
    }
    arith_state *s;
    if ((st = state_new(k, n > 1 ? n - 1 : 1, &s)))
        return st;
    s->mean_n = mean && n > 1 ? n : 0;
    for (int j = 0; j < s->n_stages; j++) {
        arith_stage *g = &s->stages[j];
        const otl_rt *x = j == 0 ? k->in[0] : NULL, *y = n > 1 ? k->in[j + 1] : k->in[0];
        int ranks[3] = {rank, x ? x->rank : rank, y->rank};
        const int64_t *d[3] = {dims, x ? x->dims : dims, y->dims};
        const char *names[3] = {k->out[0] ? k->out[0]->name : "", x ? x->name : "", y->name};
        if ((st = otl_bcast_init_dims(k, &g->b, 3, ranks, d, names)))
            return st;
        g->op = n > 1 ? op : OP_COPY;
        g->ia = x ? 1 : 0;
        g->ib = 2;
        g->a = x;
        g->bv = y;
    }
    return otl_rt_set(k, k->out[0], k->in[0]->dtype, rank, dims);
}

static otl_status max_infer(otl_kctx *k) { return variadic_setup(k, OP_MAX, numeric, 0); }
static otl_status min_infer(otl_kctx *k) { return variadic_setup(k, OP_MIN, numeric, 0); }
static otl_status sum_infer(otl_kctx *k) { return variadic_setup(k, OP_ADD, floats, 0); }
static otl_status mean_infer(otl_kctx *k) { return variadic_setup(k, OP_ADD, floats, 1); }

/* ---------------------------------------------------------------- forward */

static void pow_special_range(void *ctx, int64_t start, int64_t end)
{
    arith_ctx *c = ctx;
    const float *x = (const float *)c->a;
    float *z = (float *)c->z;
    switch (c->op) {
    case 1:
        #pragma omp simd
        for (int64_t i = start; i < end; i++)
            z[i] = x[i] * x[i];
        break;
    case 2:
        #pragma omp simd
        for (int64_t i = start; i < end; i++)
            z[i] = x[i] * x[i] * x[i];
        break;
    case 3:
        #pragma omp simd
        for (int64_t i = start; i < end; i++)
            z[i] = x[i] < -FLT_MAX ? INFINITY : sqrtf(x[i]) + 0.0f; /* as powf: (-0)^0.5 = +0, (-inf)^0.5 = inf */
        break;
    default:
        memcpy(z + start, x + start, (size_t)(end - start) * sizeof *z);
        break;
    }
}

static void mean_range(void *ctx, int64_t start, int64_t end)
{
    arith_ctx *c = ctx;
    if (c->dt == OTL_DTYPE_FLOAT) {
        float *z = (float *)c->z, d = (float)c->sa;
        #pragma omp simd
        for (int64_t i = start; i < end; i++)
            z[i] /= d;
    } else {
        for (int64_t i = start; i < end; i++)
            otl_set_f(c->z, c->dt, i, otl_get_f(c->z, c->dt, i) / (double)c->sa);
    }
}

static otl_status arith_forward(otl_kctx *k)
{
    arith_state *s = k->state;
    otl_rt *out = k->out[0];
    if (out->numel == 0)
        return OTL_OK;
    int dt = out->dtype;
    int64_t grain = dt == OTL_DTYPE_FLOAT || dt == OTL_DTYPE_DOUBLE ? 32768 : 4096;
    otl_status st;
    if (s->bin) {
        dnnl_memory_set_data_handle(s->m0, k->in[s->bin_src0]->data);
        dnnl_memory_set_data_handle(s->m1, k->in[1 - s->bin_src0]->data);
        dnnl_memory_set_data_handle(s->mdst, out->data);
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC_0, s->m0}, {DNNL_ARG_SRC_1, s->m1}, {DNNL_ARG_DST, s->mdst}};
        return otl_dnnl_run(k, s->bin, 3, args);
    }
    const void *data[2] = {NULL, NULL}; /* binary ops: the inputs' plain data */
    for (int i = 0; i < 2 && i < k->n_in; i++)
        if (k->in[i] && (st = otl_plain_get(k, k->in[i], &s->pin[i], &data[i])))
            return st;
    if (s->pow_special) {
        float e = *(const float *)k->in[1]->data;
        int sp = e == 2.0f ? 1 : e == 3.0f ? 2 : e == 0.5f ? 3 : e == 1.0f ? 4 : 0;
        if (sp) {
            arith_ctx c = {.op = sp, .dt = dt, .z = out->data, .a = data[0]};
            otl_parallel_range(out->numel, sp == 3 ? 8192 : 32768, pow_special_range, &c);
            return OTL_OK;
        }
    }
    int err = 0;
    for (int j = 0; j < s->n_stages; j++) {
        const arith_stage *g = &s->stages[j];
        arith_ctx c = {
            .op = g->op, .dt = dt, .dtb = g->bv->dtype, .z = out->data,
            .a = !g->a ? out->data : g->a == k->in[0] ? data[0] : g->a->data,
            .b = g->bv == k->in[1] ? data[1] : g->bv->data,
            .ia = g->ia, .ib = g->ib, .sa = g->b.inner[g->ia], .sb = g->b.inner[g->ib],
        };
        int64_t gr = grain;
        if (g->op == OP_POW || g->op == OP_FMOD || (c.dt != c.dtb) ||
            dt == OTL_DTYPE_FLOAT16 || dt == OTL_DTYPE_BFLOAT16)
            gr = 4096;
        otl_bcast_run(&g->b, row_for(c.dt, c.dtb), &c, gr);
        err |= c.err;
    }
    if (s->mean_n) {
        arith_ctx c = {.dt = dt, .z = out->data, .sa = s->mean_n};
        otl_parallel_range(out->numel, grain, mean_range, &c);
    }
    if (err)
        return otl_kfail(k, OTL_ERR_INPUT, "integer division by zero");
    return OTL_OK;
}

/* ---------------------------------------------------------------- gradients
 * Every input gradient is reduced back to its input's shape (otl_grad_unbroadcast); Mul needs
 * the other operand, Div the divisor and its output, Pow both operands (PowGrad recomputes
 * A^B rather than keeping the output). */

/* Before opset 7, broadcast=1 with an explicit axis places B inside A; ReduceSumTo aligns shapes
 * at the end, so only the default placement has a gradient. */
static otl_status legacy_check(otl_gctx *c)
{
    const otl_attr *bc = otl_node_attr(c->node, "broadcast"), *ax = otl_node_attr(c->node, "axis");
    if (c->opset < 7 && bc && bc->i && ax)
        return otl_error_set(c->err, OTL_ERR_UNSUPPORTED,
                             "%s: node '%s' (%s): no gradient for legacy broadcasting with an explicit axis",
                             c->file, c->node->name, c->node->op_type);
    return OTL_OK;
}

/* a op b for the standard Mul/Div; before opset 7 they broadcast only with broadcast=1 */
static const char *emit2(otl_gctx *c, const char *op, const char *a, const char *b)
{
    const char *in[2] = {a, b};
    otl_node *n;
    const char *out = a && b ? otl_gemit1(c, "", op, 2, in, &n) : NULL;
    if (out && c->opset < 7 && otl_gattr_int(c, n, "broadcast", 1))
        return NULL;
    return out;
}

static const char *emit_neg(otl_gctx *c, const char *a)
{
    return a ? otl_gemit1(c, "", "Neg", 1, &a, NULL) : NULL;
}

static otl_status add_grad(otl_gctx *c)
{
    otl_status st = legacy_check(c);
    for (int i = 0; !st && i < 2; i++)
        if (c->need[i])
            otl_grad_set(c, i, otl_grad_unbroadcast(c, c->dy[0], i));
    return st;
}

static otl_status sub_grad(otl_gctx *c)
{
    otl_status st = legacy_check(c);
    if (!st && c->need[0])
        otl_grad_set(c, 0, otl_grad_unbroadcast(c, c->dy[0], 0));
    if (!st && c->need[1])
        otl_grad_set(c, 1, emit_neg(c, otl_grad_unbroadcast(c, c->dy[0], 1)));
    return st;
}

static otl_status mul_grad(otl_gctx *c)
{
    otl_status st = legacy_check(c);
    for (int i = 0; !st && i < 2; i++) {
        if (!c->need[i])
            continue;
        const char *t = emit2(c, "Mul", c->dy[0], c->node->inputs[1 - i]);
        otl_grad_set(c, i, t ? otl_grad_unbroadcast(c, t, i) : NULL);
    }
    return st;
}

/* dA = dY / B; dB = -dY * A / B^2 = -(dY / B) * Y */
static otl_status div_grad(otl_gctx *c)
{
    otl_status st = legacy_check(c);
    if (st)
        return st;
    const char *t = emit2(c, "Div", c->dy[0], c->node->inputs[1]);
    if (c->need[0])
        otl_grad_set(c, 0, t ? otl_grad_unbroadcast(c, t, 0) : NULL);
    if (c->need[1]) {
        const char *u = t ? emit2(c, "Mul", t, c->node->outputs[0]) : NULL;
        otl_grad_set(c, 1, emit_neg(c, u ? otl_grad_unbroadcast(c, u, 1) : NULL));
    }
    return st;
}

static otl_status pow_grad(otl_gctx *c)
{
    otl_status st = legacy_check(c);
    if (st)
        return st;
    const otl_node *n = c->node;
    const char *in[3] = {c->dy[0], n->inputs[0], n->inputs[1]};
    const char *out[2] = {c->need[0] ? otl_gname(c, n->inputs[0]) : "", c->need[1] ? otl_gname(c, n->inputs[1]) : ""};
    otl_node *g = otl_gemit(c, OTL_GRAD_DOMAIN, "PowGrad", 3, in, 2, out);
    for (int i = 0; i < 2; i++)
        if (c->need[i])
            otl_grad_set(c, i, g ? otl_grad_unbroadcast(c, out[i], i) : NULL);
    return OTL_OK;
}

/* Sum: dXi = dY reduced to Xi's shape; Mean: also divided by the number of inputs. */
static otl_status sum_mean_grad(otl_gctx *c, int mean)
{
    int n = c->n_in;
    for (int i = 0; i < n; i++) {
        if (!c->need[i])
            continue;
        if (n == 1) {
            otl_grad_set(c, 0, c->dy[0]);
            break;
        }
        const char *r = otl_grad_unbroadcast(c, c->dy[0], i);
        if (mean && r) {
            otl_node *s;
            r = otl_gemit1(c, OTL_GRAD_DOMAIN, "Scale", 1, &r, &s);
            if (s && otl_gattr_float(c, s, "scale", 1.0f / (float)n))
                return c->err->code;
        }
        otl_grad_set(c, i, r);
    }
    return OTL_OK;
}

static otl_status sum_grad(otl_gctx *c) { return sum_mean_grad(c, 0); }
static otl_status mean_grad(otl_gctx *c) { return sum_mean_grad(c, 1); }

/* Max/Min: MaxMinGrad sends dY to the selected inputs (split among ties). */
static otl_status maxmin_grad(otl_gctx *c, int is_min)
{
    int n = c->n_in;
    if (n == 1) {
        otl_grad_set(c, 0, c->dy[0]);
        return OTL_OK;
    }
    const char **in = calloc((size_t)n + 1, sizeof *in), **out = calloc((size_t)n, sizeof *out);
    if (!in || !out) {
        free(in);
        free(out);
        return otl_error_set(c->err, OTL_ERR_NOMEM, "%s: out of memory building gradients", c->file);
    }
    in[0] = c->dy[0];
    for (int i = 0; i < n; i++) {
        in[i + 1] = c->node->inputs[i];
        out[i] = c->need[i] ? otl_gname(c, c->node->inputs[i]) : "";
    }
    otl_node *g = otl_gemit(c, OTL_GRAD_DOMAIN, "MaxMinGrad", n + 1, in, n, out);
    otl_status st = g && is_min ? otl_gattr_int(c, g, "min", 1) : OTL_OK;
    for (int i = 0; i < n; i++)
        if (c->need[i])
            otl_grad_set(c, i, g ? otl_grad_unbroadcast(c, out[i], i) : NULL);
    free(in);
    free(out);
    return st;
}

static otl_status max_grad(otl_gctx *c) { return maxmin_grad(c, 0); }
static otl_status min_grad(otl_gctx *c) { return maxmin_grad(c, 1); }

/* ---------------------------------------------------------------- ops */

#define ARITH_OP(NAME, SINCE, INFER, FLAGS, GRAD_INPUTS, GRAD)                                  \
    const otl_op otl_op_##NAME = {                                                                \
        .op_type = #NAME, .domain = "", .since = SINCE, .until = 22, .flags = FLAGS,              \
        .infer = INFER, .prepare = arith_prepare, .forward = arith_forward, .release = arith_release, \
        .grad_inputs = GRAD_INPUTS, .grad = GRAD,                                                 \
    };

#define ALL_INPUTS 0xffffffffu

ARITH_OP(Add, 1, add_infer, OTL_OPF_ANY_LAYOUT, 3, add_grad)
ARITH_OP(Sub, 1, sub_infer, OTL_OPF_ANY_LAYOUT, 3, sub_grad)
ARITH_OP(Mul, 1, mul_infer, OTL_OPF_ANY_LAYOUT, 3, mul_grad)
ARITH_OP(Div, 1, div_infer, OTL_OPF_ANY_LAYOUT, 3, div_grad)
ARITH_OP(Pow, 1, pow_infer, 0, 3, pow_grad)
ARITH_OP(Mod, 10, mod_infer, 0, 0, NULL)
ARITH_OP(BitShift, 11, bitshift_infer, 0, 0, NULL)
ARITH_OP(Max, 6, max_infer, 0, ALL_INPUTS, max_grad)
ARITH_OP(Min, 6, min_infer, 0, ALL_INPUTS, min_grad)
ARITH_OP(Sum, 6, sum_infer, 0, ALL_INPUTS, sum_grad)
ARITH_OP(Mean, 6, mean_infer, 0, ALL_INPUTS, mean_grad)
