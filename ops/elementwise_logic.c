/* elementwise_logic.c - comparisons and logic with multidirectional broadcasting: Equal, Less,
 * Greater, LessOrEqual, GreaterOrEqual, And, Or, Xor, Not (bool outputs), and Where.
 * Differentiable inputs: Where's X and Y (the gradient goes where the condition picked them:
 * onnx_tl.WhereGrad below); none of the others, which carry a rule that autodiff never calls
 * (grad_inputs 0) so that a mask computed from a trainable value ends the gradient cleanly. */
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/broadcast.h"

enum { CMP_EQ, CMP_LT, CMP_GT, CMP_LE, CMP_GE, LOG_AND, LOG_OR, LOG_XOR };

typedef struct logic_state {
    otl_bcast b;
    int op;
} logic_state;

typedef struct logic_ctx {
    int op, dt;
    uint8_t *z;
    const char *a, *b, *c;
    int64_t sa, sb, sc;
    size_t esize;              /* Where: element size */
} logic_ctx;

/* z[i] = EXPR(x, y) over a run (z is bool). */
#define RUN(T, EXPR)                                                                              \
    do {                                                                                          \
        uint8_t *z_ = c->z + o;                                                                   \
        const T *a_ = (const T *)c->a + off[0], *b_ = (const T *)c->b + off[1];                   \
        if (c->sa && c->sb) {                                                                     \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                 \
                const T x = a_[i], y = b_[i];                                                     \
                z_[i] = (uint8_t)(EXPR);                                                          \
            }                                                                                     \
        } else if (c->sa) {                                                                       \
            const T y = b_[0];                                                                    \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                 \
                const T x = a_[i];                                                                \
                z_[i] = (uint8_t)(EXPR);                                                          \
            }                                                                                     \
        } else if (c->sb) {                                                                       \
            const T x = a_[0];                                                                    \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                 \
                const T y = b_[i];                                                                \
                z_[i] = (uint8_t)(EXPR);                                                          \
            }                                                                                     \
        } else {                                                                                  \
            const T x = a_[0], y = b_[0];                                                         \
            memset(z_, (uint8_t)(EXPR), (size_t)n);                                               \
        }                                                                                         \
    } while (0)

#define DEF_ROW_CMP(NAME, T)                                                                      \
    static void NAME(void *ctx, int64_t o, const int64_t *off, int64_t n)                         \
    {                                                                                             \
        logic_ctx *c = ctx;                                                                       \
        switch (c->op) {                                                                          \
        case CMP_EQ: RUN(T, x == y); break;                                                       \
        case CMP_LT: RUN(T, x < y); break;                                                        \
        case CMP_GT: RUN(T, x > y); break;                                                        \
        case CMP_LE: RUN(T, x <= y); break;                                                       \
        case CMP_GE: RUN(T, x >= y); break;                                                       \
        case LOG_AND: RUN(T, (x != 0) & (y != 0)); break;                                         \
        case LOG_OR: RUN(T, (x != 0) | (y != 0)); break;                                          \
        case LOG_XOR: RUN(T, (x != 0) ^ (y != 0)); break;                                         \
        }                                                                                         \
    }

DEF_ROW_CMP(row_f32, float)
DEF_ROW_CMP(row_f64, double)
DEF_ROW_CMP(row_i8, int8_t)
DEF_ROW_CMP(row_i16, int16_t)
DEF_ROW_CMP(row_i32, int32_t)
DEF_ROW_CMP(row_i64, int64_t)
DEF_ROW_CMP(row_u8, uint8_t)
DEF_ROW_CMP(row_u16, uint16_t)
DEF_ROW_CMP(row_u32, uint32_t)
DEF_ROW_CMP(row_u64, uint64_t)

/* float16 / bfloat16: compared as float (exact) */
static void row_generic(void *ctx, int64_t o, const int64_t *off, int64_t n)
{
    logic_ctx *c = ctx;
    for (int64_t i = 0; i < n; i++) {
        double x = otl_get_f(c->a, c->dt, off[0] + i * c->sa), y = otl_get_f(c->b, c->dt, off[1] + i * c->sb);
        int r = 0;
        switch (c->op) {
        case CMP_EQ: r = x == y; break;
        case CMP_LT: r = x < y; break;
        case CMP_GT: r = x > y; break;
        case CMP_LE: r = x <= y; break;
        case CMP_GE: r = x >= y; break;
        }
        c->z[o + i] = (uint8_t)r;
    }
}

static otl_bcast_row_fn row_for(int dt)
{
    switch (dt) {
    case OTL_DTYPE_FLOAT: return row_f32;
    case OTL_DTYPE_DOUBLE: return row_f64;
    case OTL_DTYPE_INT8: return row_i8;
    case OTL_DTYPE_INT16: return row_i16;
    case OTL_DTYPE_INT32: return row_i32;
    case OTL_DTYPE_INT64: return row_i64;
    case OTL_DTYPE_UINT8: case OTL_DTYPE_BOOL: return row_u8;
    case OTL_DTYPE_UINT16: return row_u16;
    case OTL_DTYPE_UINT32: return row_u32;
    case OTL_DTYPE_UINT64: return row_u64;
    default: return row_generic;
    }
}

static const int numeric[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_BFLOAT16,
                              OTL_DTYPE_INT64, OTL_DTYPE_INT32, OTL_DTYPE_INT16, OTL_DTYPE_INT8,
                              OTL_DTYPE_UINT64, OTL_DTYPE_UINT32, OTL_DTYPE_UINT16, OTL_DTYPE_UINT8, 0};
static const int numeric_bool[] = {OTL_DTYPE_BOOL, OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16,
                                   OTL_DTYPE_BFLOAT16, OTL_DTYPE_INT64, OTL_DTYPE_INT32, OTL_DTYPE_INT16,
                                   OTL_DTYPE_INT8, OTL_DTYPE_UINT64, OTL_DTYPE_UINT32, OTL_DTYPE_UINT16,
                                   OTL_DTYPE_UINT8, 0};
static const int bools[] = {OTL_DTYPE_BOOL, 0};

static otl_status logic_setup(otl_kctx *k, int op, const int *dtypes)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, dtypes)) || (st = otl_check_in(k, 1, dtypes)))
        return st;
    if (k->in[0]->dtype != k->in[1]->dtype)
        return otl_kfail(k, OTL_ERR_INPUT, "inputs have different dtypes (%s and %s)",
                         otl_dtype_name(k->in[0]->dtype), otl_dtype_name(k->in[1]->dtype));
    logic_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->op = op;
    if ((st = otl_bcast_init_binary(k, &s->b, k->in[0], k->in[1])))
        return st;
    return otl_rt_set(k, k->out[0], OTL_DTYPE_BOOL, s->b.rank, s->b.dims);
}

/* Equal accepts bool (opset 11+); the ordered comparisons only numbers. */
static otl_status equal_infer(otl_kctx *k) { return logic_setup(k, CMP_EQ, numeric_bool); }
static otl_status less_infer(otl_kctx *k) { return logic_setup(k, CMP_LT, numeric); }
static otl_status greater_infer(otl_kctx *k) { return logic_setup(k, CMP_GT, numeric); }
static otl_status less_equal_infer(otl_kctx *k) { return logic_setup(k, CMP_LE, numeric); }
static otl_status greater_equal_infer(otl_kctx *k) { return logic_setup(k, CMP_GE, numeric); }
static otl_status and_infer(otl_kctx *k) { return logic_setup(k, LOG_AND, bools); }
static otl_status or_infer(otl_kctx *k) { return logic_setup(k, LOG_OR, bools); }
static otl_status xor_infer(otl_kctx *k) { return logic_setup(k, LOG_XOR, bools); }

static otl_status logic_forward(otl_kctx *k)
{
    logic_state *s = k->state;
    if (s->b.numel == 0)
        return OTL_OK;
    logic_ctx c = {
        .op = s->op, .dt = k->in[0]->dtype, .z = k->out[0]->data, .a = k->in[0]->data,
        .b = k->in[1]->data, .sa = s->b.inner[0], .sb = s->b.inner[1],
    };
    otl_bcast_run(&s->b, row_for(c.dt), &c, 32768);
    return OTL_OK;
}

/* The rule of the ops whose outputs carry no gradient: with grad_inputs 0 autodiff marks their
 * outputs as not depending on any parameter and never calls it. */
static otl_status no_grad(otl_gctx *c)
{
    (void)c;
    return OTL_OK;
}

#define LOGIC_OP(NAME, SINCE, INFER)                                                              \
    const otl_op otl_op_##NAME = {                                                                \
        .op_type = #NAME, .domain = "", .since = SINCE, .until = 22,                              \
        .infer = INFER, .forward = logic_forward, .grad_inputs = 0, .grad = no_grad,              \
    };

/* Equal-19 adds strings (refused by the dtype check); the rest only added dtypes. */
LOGIC_OP(Equal, 1, equal_infer)
LOGIC_OP(Less, 1, less_infer)
LOGIC_OP(Greater, 1, greater_infer)
LOGIC_OP(LessOrEqual, 12, less_equal_infer)
LOGIC_OP(GreaterOrEqual, 12, greater_equal_infer)
LOGIC_OP(And, 1, and_infer)
LOGIC_OP(Or, 1, or_infer)
LOGIC_OP(Xor, 1, xor_infer)

/* ---------------------------------------------------------------- Not */

static otl_status not_infer(otl_kctx *k)
{
    otl_status st = otl_check_in(k, 0, bools);
    if (st)
        return st;
    return otl_rt_like(k, k->out[0], k->in[0]);
}

static void not_range(void *ctx, int64_t start, int64_t end)
{
    logic_ctx *c = ctx;
    const uint8_t *x = (const uint8_t *)c->a;
    #pragma omp simd
    for (int64_t i = start; i < end; i++)
        c->z[i] = x[i] == 0;
}

static otl_status not_forward(otl_kctx *k)
{
    logic_ctx c = {.z = k->out[0]->data, .a = k->in[0]->data};
    otl_parallel_range(k->out[0]->numel, 65536, not_range, &c);
    return OTL_OK;
}

const otl_op otl_op_Not = {
    .op_type = "Not", .domain = "", .since = 1, .until = 22,
    .infer = not_infer, .forward = not_forward, .grad_inputs = 0, .grad = no_grad,
};

/* ---------------------------------------------------------------- Where */

static otl_status where_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, bools)) || (st = otl_check_in(k, 1, NULL)) || (st = otl_check_in(k, 2, NULL)))
        return st;
    if (k->in[1]->dtype != k->in[2]->dtype)
        return otl_kfail(k, OTL_ERR_INPUT, "X and Y have different dtypes (%s and %s)",
                         otl_dtype_name(k->in[1]->dtype), otl_dtype_name(k->in[2]->dtype));
    int sz = otl_dtype_size2(k->in[1]->dtype) / 2; /* bytes; 0 for strings and 4-bit types */
    if (!(sz == 1 || sz == 2 || sz == 4 || sz == 8 || sz == 16))
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "dtype %s is not supported", otl_dtype_name(k->in[1]->dtype));
    logic_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    const otl_rt *in[3] = {k->in[0], k->in[1], k->in[2]};
    if ((st = otl_bcast_init(k, &s->b, 3, in)))
        return st;
    return otl_rt_set(k, k->out[0], k->in[1]->dtype, s->b.rank, s->b.dims);
}

/* selects through a mask so that the contiguous case vectorizes */
#define WHERE_RUN(T)                                                                              \
    do {                                                                                          \
        T *z_ = (T *)(void *)c->z + o;                                                            \
        const uint8_t *q = (const uint8_t *)c->a + off[0];                                        \
        const T *x = (const T *)(const void *)c->b + off[1], *y = (const T *)(const void *)c->c + off[2]; \
        const int64_t sq = c->sa, sx = c->sb, sy = c->sc;                                         \
        if (sq && sx && sy) {                                                                     \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                                 \
                const T m = (T)0 - (T)(q[i] != 0);                                                \
                z_[i] = (T)((x[i] & m) | (y[i] & (T)~m));                                         \
            }                                                                                     \
        } else {                                                                                  \
            for (int64_t i = 0; i < n; i++)                                                       \
                z_[i] = q[i * sq] ? x[i * sx] : y[i * sy];                                        \
        }                                                                                         \
    } while (0)

#define WHERE_RUN_WIDE(T)                                                                         \
    do {                                                                                          \
        T *z_ = (T *)(void *)c->z + o;                                                            \
        const uint8_t *q = (const uint8_t *)c->a + off[0];                                        \
        const T *x = (const T *)(const void *)c->b + off[1], *y = (const T *)(const void *)c->c + off[2]; \
        for (int64_t i = 0; i < n; i++)                                                           \
            z_[i] = q[i * c->sa] ? x[i * c->sb] : y[i * c->sc];                                   \
    } while (0)

typedef struct { uint64_t lo, hi; } u128;

static void where_row(void *ctx, int64_t o, const int64_t *off, int64_t n)
{
    logic_ctx *c = ctx;
    switch (c->esize) {
    case 1: WHERE_RUN(uint8_t); break;
    case 2: WHERE_RUN(uint16_t); break;
    case 4: WHERE_RUN(uint32_t); break;
    case 8: WHERE_RUN(uint64_t); break;
    default: WHERE_RUN_WIDE(u128); break;
    }
}

static otl_status where_forward(otl_kctx *k)
{
    logic_state *s = k->state;
    if (s->b.numel == 0)
        return OTL_OK;
    logic_ctx c = {
        .z = k->out[0]->data, .a = k->in[0]->data, .b = k->in[1]->data, .c = k->in[2]->data,
        .sa = s->b.inner[0], .sb = s->b.inner[1], .sc = s->b.inner[2],
        .esize = (size_t)otl_dtype_size2(k->out[0]->dtype) / 2,
    };
    otl_bcast_run(&s->b, where_row, &c, 32768);
    return OTL_OK;
}

/* dX = dY where the condition holds, dY = dY where it does not, each reduced to its input's
 * shape; the condition is not differentiable. */
static otl_status where_grad(otl_gctx *c)
{
    const otl_node *n = c->node;
    const char *in[2] = {n->inputs[0], c->dy[0]};
    const char *out[2] = {c->need[1] ? otl_gname(c, n->inputs[1]) : "", c->need[2] ? otl_gname(c, n->inputs[2]) : ""};
    otl_node *g = otl_gemit(c, OTL_GRAD_DOMAIN, "WhereGrad", 2, in, 2, out);
    for (int i = 1; i <= 2; i++)
        if (c->need[i])
            otl_grad_set(c, i, g ? otl_grad_unbroadcast(c, out[i - 1], i) : NULL);
    return OTL_OK;
}

const otl_op otl_op_Where = {
    .op_type = "Where", .domain = "", .since = 9, .until = 22,
    .infer = where_infer, .forward = where_forward, .grad_inputs = 6, .grad = where_grad,
};

/* ---------------------------------------------------------------- WhereGrad */

/* WhereGrad(cond, dY) -> (dY where cond, dY where !cond), both in dY's shape, either optional. */
static otl_status where_grad_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, bools)) || (st = otl_check_in(k, 1, NULL)))
        return st;
    const otl_rt *dy = k->in[1];
    int sz = otl_dtype_size2(dy->dtype) / 2;
    if (!(sz == 1 || sz == 2 || sz == 4 || sz == 8))
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "dtype %s is not supported", otl_dtype_name(dy->dtype));
    logic_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    const otl_rt *in[2] = {k->in[0], dy};
    if ((st = otl_bcast_init(k, &s->b, 2, in)))
        return st;
    if (!s->b.same[1])
        return otl_kfail(k, OTL_ERR_INPUT, "condition '%s' broadcasts beyond the gradient's shape", k->in[0]->name);
    for (int i = 0; i < 2; i++)
        if (otl_has_out(k, i) && (st = otl_rt_like(k, k->out[i], dy)))
            return st;
    return OTL_OK;
}

typedef struct where_grad_ctx {
    const uint8_t *q;
    const char *dy;
    char *dx, *dyy;            /* outputs (NULL when omitted) */
    int64_t sq;
    size_t esize;
} where_grad_ctx;

#define WHERE_GRAD_RUN(T)                                                                         \
    do {                                                                                          \
        const T *g = (const T *)(const void *)c->dy + o;                                          \
        T *a = c->dx ? (T *)(void *)c->dx + o : NULL, *b = c->dyy ? (T *)(void *)c->dyy + o : NULL; \
        for (int64_t i = 0; i < n; i++) {                                                         \
            const T m = (T)0 - (T)(q[i * c->sq] != 0);                                            \
            if (a)                                                                                \
                a[i] = g[i] & m;                                                                  \
            if (b)                                                                                \
                b[i] = g[i] & (T)~m;                                                              \
        }                                                                                         \
    } while (0)

/* the bit patterns of dY or zeros (+0.0 for floats) */
static void where_grad_row(void *ctx, int64_t o, const int64_t *off, int64_t n)
{
    const where_grad_ctx *c = ctx;
    const uint8_t *q = c->q + off[0];
    switch (c->esize) {
    case 1: WHERE_GRAD_RUN(uint8_t); break;
    case 2: WHERE_GRAD_RUN(uint16_t); break;
    case 4: WHERE_GRAD_RUN(uint32_t); break;
    default: WHERE_GRAD_RUN(uint64_t); break;
    }
}

static otl_status where_grad_forward(otl_kctx *k)
{
    logic_state *s = k->state;
    if (s->b.numel == 0)
        return OTL_OK;
    where_grad_ctx c = {
        .q = k->in[0]->data, .dy = k->in[1]->data, .dx = otl_has_out(k, 0) ? k->out[0]->data : NULL,
        .dyy = otl_has_out(k, 1) ? k->out[1]->data : NULL, .sq = s->b.inner[0],
        .esize = (size_t)otl_dtype_size2(k->in[1]->dtype) / 2,
    };
    otl_bcast_run(&s->b, where_grad_row, &c, 32768);
    return OTL_OK;
}

const otl_op otl_op_WhereGrad = {
    .op_type = "WhereGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = where_grad_infer, .forward = where_grad_forward,
};
