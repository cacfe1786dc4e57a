/* reduce.c - reductions over a set of axes (ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd,
 * ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp) and ArgMax/ArgMin over one
 * axis. Axes come from the attribute, or from input 1 (ReduceSum from opset 13, the others from
 * 18). float32/double on contiguous (outer, reduced, inner) views run directly; other layouts
 * and dtypes are gathered into (kept, reduced) rows first. Accumulation in double or int64.
 * Differentiable input: data (ArgMax/ArgMin: none). Reverse mode: the private kernel
 *   onnx_tl.ReduceGrad(dY, Shape(X), X, Y, axes) -> dX   attributes op (the forward's op type),
 *   keepdims, noop_with_empty_axes, axes (as the forward's; input 4 when the forward has it)
 * broadcasts dY back over the reduced axes (no Unsqueeze/Expand nodes: keepdims=0 is handled by
 * the same index mapping) and applies the local derivative:
 *   Sum dY, Mean dY/count, SumSquare 2 X dY, L1 sign(X) dY, L2 X/Y dY (0 where Y == 0),
 *   LogSum dY / exp(Y), LogSumExp exp(X - Y) dY, Prod dY * product of the others (exact with
 *   zeros), Max/Min dY split evenly among the elements equal to Y (PyTorch's amax/amin).
 * X and Y are inputs only for the ops whose derivative needs them (Sum and Mean keep nothing).
 * float32 Sum/Mean over an (outer, reduced, inner) view are plain broadcasting loops; the rest
 * walks each output's group in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/op.h"

static otl_status reduce_grad(otl_gctx *c);

enum { RED_SUM, RED_MEAN, RED_MAX, RED_MIN, RED_PROD, RED_L1, RED_L2, RED_SUMSQ, RED_LOGSUM, RED_LSE };

typedef struct reduce_state {
    int op;
    int noop;                          /* empty axes with noop_with_empty_axes: Y = X */
    int simple;                        /* X is (O, R, I) with R the reduced block */
    int64_t O, R, I;                   /* simple view; R is the reduced count in every case */
    int64_t nout;                      /* output elements */
    int nk, nr;                        /* kept and reduced dims (size-1 dims dropped) */
    int64_t kd[OTL_MAX_RANK], ks[OTL_MAX_RANK];  /* kept dims and their strides in X */
    int64_t rd[OTL_MAX_RANK], rs[OTL_MAX_RANK];  /* reduced dims and their strides in X */
} reduce_state;

static const int red_float_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_BFLOAT16, 0};

static int is_int_type(int dt)
{
    switch (dt) {
    case OTL_DTYPE_INT64: case OTL_DTYPE_INT32: case OTL_DTYPE_INT16: case OTL_DTYPE_INT8:
    case OTL_DTYPE_UINT64: case OTL_DTYPE_UINT32: case OTL_DTYPE_UINT16: case OTL_DTYPE_UINT8:
        return 1;
    default:
        return 0;
    }
}

static int is_float_type(int dt)
{
    for (const int *t = red_float_types; *t; t++)
        if (*t == dt)
            return 1;
    return 0;
}

/* Offset in X of linear index `i` over dims d with strides s. */
static inline int64_t odometer(int64_t i, int n, const int64_t *d, const int64_t *s)
{
    int64_t off = 0;
    for (int j = n - 1; j >= 0; j--) {
        off += (i % d[j]) * s[j];
        i /= d[j];
    }
    return off;
}

static double red_post(int op, double acc, int64_t n, double shift)
{
    switch (op) {
    case RED_MEAN: return acc / (double)n;
    case RED_L2: return sqrt(acc);
    case RED_LOGSUM: return log(acc);
    case RED_LSE: return log(acc) + shift;
    default: return acc;
    }
}

static double red_init(int op)
{
    switch (op) {
    case RED_MAX: return -INFINITY;
    case RED_MIN: return INFINITY;
    case RED_PROD: return 1.0;
    default: return 0.0;
    }
}

/* ---------------------------------------------------------------- float kernels */

/* One contiguous row of n values reduced to a double (post-processing applied). */
#define RED_ROW(NAME, T)                                                                          \
    static double NAME(const T *x, int64_t n, int op)                                             \
    {                                                                                             \
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0, m = 0;                                             \
        int64_t i = 0;                                                                            \
        switch (op) {                                                                             \
        case RED_SUM: case RED_MEAN: case RED_LOGSUM:                                             \
            for (; i + 4 <= n; i += 4) {                                                          \
                a0 += x[i], a1 += x[i + 1], a2 += x[i + 2], a3 += x[i + 3];                       \
            }                                                                                     \
            for (; i < n; i++)                                                                    \
                a0 += x[i];                                                                       \
            break;                                                                                \
        case RED_L1:                                                                              \
            for (; i < n; i++)                                                                    \
                a0 += fabs((double)x[i]);                                                         \
            break;                                                                                \
        case RED_SUMSQ: case RED_L2:                                                              \
            for (; i + 4 <= n; i += 4) {                                                          \
                a0 += (double)x[i] * x[i], a1 += (double)x[i + 1] * x[i + 1];                     \
                a2 += (double)x[i + 2] * x[i + 2], a3 += (double)x[i + 3] * x[i + 3];             \
            }                                                                                     \
            for (; i < n; i++)                                                                    \
                a0 += (double)x[i] * x[i];                                                        \
            break;                                                                                \
        case RED_MAX:                                                                             \
            a0 = -INFINITY;                                                                       \
            for (; i < n; i++)                                                                    \
                if (x[i] > a0 || x[i] != x[i])                                                    \
                    a0 = x[i];                                                                    \
            return a0;                                                                            \
        case RED_MIN:                                                                             \
            a0 = INFINITY;                                                                        \
            for (; i < n; i++)                                                                    \
                if (x[i] < a0 || x[i] != x[i])                                                    \
                    a0 = x[i];                                                                    \
            return a0;                                                                            \
        case RED_PROD:                                                                            \
            a0 = 1;                                                                               \
            for (; i < n; i++)                                                                    \
                a0 *= x[i];                                                                       \
            return a0;                                                                            \
        case RED_LSE:                                                                             \
            m = -INFINITY;                                                                        \
            for (; i < n; i++)                                                                    \
                if (x[i] > m || x[i] != x[i])                                                     \
                    m = x[i];                                                                     \
            if (!isfinite(m))                                                                     \
                m = m != m ? m : 0;                                                               \
            for (i = 0; i < n; i++)                                                               \
                a0 += exp((double)x[i] - m);                                                      \
            break;                                                                                \
        }                                                                                         \
        return red_post(op, (a0 + a1) + (a2 + a3), n, m);                                         \
    }

RED_ROW(red_row_f32, float)
RED_ROW(red_row_f64, double)

/* X viewed as (O, R, I) with I > 1: blocks of the inner axis accumulated across R. */
#define RED_BLK 256
#define RED_COLS(NAME, T)                                                                         \
    static void NAME(T *y, const T *x, int64_t O, int64_t R, int64_t I, int op)                   \
    {                                                                                             \
        int64_t nblk = (I + RED_BLK - 1) / RED_BLK;                                               \
        _Pragma("omp parallel for if (O * R * I > 32768)")                                        \
        for (int64_t t = 0; t < O * nblk; t++) {                                                  \
            int64_t o = t / nblk, i0 = (t % nblk) * RED_BLK;                                      \
            int64_t n = I - i0 < RED_BLK ? I - i0 : RED_BLK;                                      \
            double acc[RED_BLK], sh[RED_BLK];                                                     \
            const T *xo = x + o * R * I + i0;                                                     \
            for (int64_t i = 0; i < n; i++) {                                                     \
                acc[i] = red_init(op == RED_LSE ? RED_MAX : op);                                  \
                sh[i] = 0;                                                                        \
            }                                                                                     \
            if (op == RED_LSE) {                                                                  \
                for (int64_t r = 0; r < R; r++)                                                   \
                    for (int64_t i = 0; i < n; i++)                                               \
                        if (xo[r * I + i] > acc[i] || xo[r * I + i] != xo[r * I + i])             \
                            acc[i] = xo[r * I + i];                                               \
                for (int64_t i = 0; i < n; i++) {                                                 \
                    sh[i] = isfinite(acc[i]) || acc[i] != acc[i] ? acc[i] : 0;                    \
                    acc[i] = 0;                                                                   \
                }                                                                                 \
            }                                                                                     \
            for (int64_t r = 0; r < R; r++) {                                                     \
                const T *xr = xo + r * I;                                                         \
                switch (op) {                                                                     \
                case RED_SUM: case RED_MEAN: case RED_LOGSUM:                                     \
                    for (int64_t i = 0; i < n; i++)                                               \
                        acc[i] += xr[i];                                                          \
                    break;                                                                        \
                case RED_L1:                                                                      \
                    for (int64_t i = 0; i < n; i++)                                               \
                        acc[i] += fabs((double)xr[i]);                                            \
                    break;                                                                        \
                case RED_SUMSQ: case RED_L2:                                                      \
                    for (int64_t i = 0; i < n; i++)                                               \
                        acc[i] += (double)xr[i] * xr[i];                                          \
                    break;                                                                        \
                case RED_MAX:                                                                     \
                    for (int64_t i = 0; i < n; i++)                                               \
                        if (xr[i] > acc[i] || xr[i] != xr[i])                                     \
                            acc[i] = xr[i];                                                       \
                    break;                                                                        \
                case RED_MIN:                                                                     \
                    for (int64_t i = 0; i < n; i++)                                               \
                        if (xr[i] < acc[i] || xr[i] != xr[i])                                     \
                            acc[i] = xr[i];                                                       \
                    break;                                                                        \
                case RED_PROD:                                                                    \
                    for (int64_t i = 0; i < n; i++)                                               \
                        acc[i] *= xr[i];                                                          \
                    break;                                                                        \
                case RED_LSE:                                                                     \
                    for (int64_t i = 0; i < n; i++)                                               \
                        acc[i] += exp((double)xr[i] - sh[i]);                                     \
                    break;                                                                        \
                }                                                                                 \
            }                                                                                     \
            for (int64_t i = 0; i < n; i++)                                                       \
                y[o * I + i0 + i] = (T)red_post(op, acc[i], R, sh[i]);                            \
        }                                                                                         \
    }

RED_COLS(red_cols_f32, float)
RED_COLS(red_cols_f64, double)

/* ---------------------------------------------------------------- integer kernel */

/* One row of n int64 values; wraps modulo 2^64 like NumPy. */
static int64_t red_row_i64(const int64_t *x, int64_t n, int op)
{
    uint64_t a = op == RED_PROD ? 1 : 0;
    int64_t m = op == RED_MAX ? INT64_MIN : INT64_MAX;
    for (int64_t i = 0; i < n; i++) {
        uint64_t v = (uint64_t)x[i];
        switch (op) {
        case RED_SUM: case RED_MEAN: a += v; break;
        case RED_L1: a += x[i] < 0 ? 0 - v : v; break;
        case RED_SUMSQ: a += v * v; break;
        case RED_PROD: a *= v; break;
        case RED_MAX: m = x[i] > m ? x[i] : m; break;
        case RED_MIN: m = x[i] < m ? x[i] : m; break;
        }
    }
    if (op == RED_MAX || op == RED_MIN)
        return m;
    if (op == RED_MEAN)
        return (int64_t)a / n; /* truncation toward zero, as NumPy's mean cast back to int */
    return (int64_t)a;
}

/* ---------------------------------------------------------------- Reduce* ops */

/* The (kept, reduced) decomposition of X (rank, dims) over `axes` (na of them; none: all axes,
 * or nothing with noop) into s, and Y's shape into (ry, yd). */
static otl_status reduce_plan(otl_kctx *k, reduce_state *s, int rank, const int64_t *dims, const int64_t *axes,
                              int na, int64_t keepdims, int64_t noop, int *ry, int64_t *yd)
{
    otl_status st;
    int red[OTL_MAX_RANK] = {0};
    for (int i = 0; i < na; i++) {
        int a;
        if ((st = otl_axis(k, axes[i], rank, &a)))
            return st;
        if (rank == 0) /* a scalar has no axes: only [] ... reduce-all (handled below) */
            return otl_kfail(k, OTL_ERR_INPUT, "axis %lld given for a scalar input", (long long)axes[i]);
        if (red[a])
            return otl_kfail(k, OTL_ERR_INPUT, "axis %lld is repeated", (long long)axes[i]);
        red[a] = 1;
    }
    *ry = 0;
    if (na == 0) {
        if (noop) {
            s->noop = 1;
            for (int i = 0; i < rank; i++)
                yd[(*ry)++] = dims[i];
            return OTL_OK;
        }
        for (int i = 0; i < rank; i++)
            red[i] = 1;
    }
    /* output shape and the (kept, reduced) decomposition */
    s->R = 1;
    s->nout = 1;
    int64_t stride = 1;
    int seg_kind[OTL_MAX_RANK], nseg = 0;
    int64_t seg_size[OTL_MAX_RANK];
    int64_t str[OTL_MAX_RANK];
    for (int i = rank - 1; i >= 0; i--) {
        str[i] = stride;
        stride *= dims[i];
    }
    for (int i = 0; i < rank; i++) {
        int64_t d = dims[i];
        if (red[i]) {
            s->R *= d;
            if (keepdims)
                yd[(*ry)++] = 1;
        } else {
            s->nout *= d;
            yd[(*ry)++] = d;
        }
        if (d == 1)
            continue;
        if (red[i]) {
            s->rd[s->nr] = d;
            s->rs[s->nr++] = str[i];
        } else {
            s->kd[s->nk] = d;
            s->ks[s->nk++] = str[i];
        }
        if (nseg && seg_kind[nseg - 1] == red[i]) {
            seg_size[nseg - 1] *= d;
        } else {
            seg_kind[nseg] = red[i];
            seg_size[nseg++] = d;
        }
    }
    /* simple when the segments read (kept)? (reduced)? (kept)? */
    int si = 0;
    s->O = s->I = 1;
    if (si < nseg && !seg_kind[si])
        s->O = seg_size[si++];
    if (si < nseg && seg_kind[si])
        si++;
    if (si < nseg && !seg_kind[si])
        s->I = seg_size[si++];
    s->simple = si == nseg;
    return OTL_OK;
}

static otl_status reduce_infer_op(otl_kctx *k, int op)
{
    static const int all_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_BFLOAT16,
                                    OTL_DTYPE_INT64, OTL_DTYPE_INT32, OTL_DTYPE_INT16, OTL_DTYPE_INT8,
                                    OTL_DTYPE_UINT32, OTL_DTYPE_UINT16, OTL_DTYPE_UINT8, 0};
    otl_status st = otl_check_in(k, 0, all_types);
    if (st)
        return st;
    const otl_rt *x = k->in[0];
    reduce_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->op = op;
    int dt = x->dtype;
    if (is_int_type(dt) && (op == RED_L2 || op == RED_LOGSUM || op == RED_LSE))
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "dtype %s is not supported for this reduction", otl_dtype_name(dt));
    /* axes: attribute until ReduceSum-13 / others-18, then optional input 1 */
    int axes_input = k->opset >= (strcmp(k->node->op_type, "ReduceSum") == 0 ? 13 : 18);
    int64_t axes[OTL_MAX_RANK], keepdims, noop = 0;
    int na = 0;
    if ((st = otl_attr_int(k, "keepdims", 1, &keepdims)))
        return st;
    if (axes_input) {
        if ((st = otl_attr_int(k, "noop_with_empty_axes", 0, &noop)))
            return st;
        if (otl_node_attr(k->node, "axes"))
            return otl_kfail(k, OTL_ERR_INPUT, "attribute 'axes' is not allowed at opset %lld (axes is input 1)",
                             (long long)k->opset);
        if (otl_has_in(k, 1) && (st = otl_const_ints(k, 1, axes, OTL_MAX_RANK, &na)))
            return st;
    } else {
        if ((st = otl_attr_ints(k, "axes", axes, OTL_MAX_RANK, &na)))
            return st;
        if (na < 0)
            na = 0;
    }
    int64_t yd[OTL_MAX_RANK];
    int ry = 0;
    if ((st = reduce_plan(k, s, x->rank, x->dims, axes, na, keepdims, noop, &ry, yd)))
        return st;
    if (!s->noop && s->R == 0 && is_int_type(dt) && (op == RED_MAX || op == RED_MIN || op == RED_MEAN))
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "empty integer reduction (no identity value)");
    return otl_rt_set(k, k->out[0], dt, ry, yd);
}

/* Gather X into rows (nout, R): row o holds the reduced values of output element o. */
static void gather_rows(void *rows, int row_dtype, const void *x, int dt, const reduce_state *s)
{
    #pragma omp parallel for if (s->nout * s->R > 32768)
    for (int64_t o = 0; o < s->nout; o++) {
        int64_t base = odometer(o, s->nk, s->kd, s->ks);
        for (int64_t r = 0; r < s->R; r++) {
            int64_t off = base + odometer(r, s->nr, s->rd, s->rs);
            if (row_dtype == OTL_DTYPE_DOUBLE)
                ((double *)rows)[o * s->R + r] = otl_get_f(x, dt, off);
            else
                ((int64_t *)rows)[o * s->R + r] = otl_get_i(x, dt, off);
        }
    }
}

static otl_status reduce_forward(otl_kctx *k)
{
    reduce_state *s = k->state;
    const otl_rt *x = k->in[0];
    otl_rt *y = k->out[0];
    if (s->noop) {
        if (y->nbytes)
            memcpy(y->data, x->data, y->nbytes);
        return OTL_OK;
    }
    if (s->nout == 0)
        return OTL_OK;
    int dt = x->dtype, op = s->op;
    if (s->simple && dt == OTL_DTYPE_FLOAT) {
        const float *xd = x->data;
        float *yd = y->data;
        if (s->I == 1) {
            #pragma omp parallel for if (s->O * s->R > 32768)
            for (int64_t o = 0; o < s->O; o++)
                yd[o] = (float)red_row_f32(xd + o * s->R, s->R, op);
        } else {
            red_cols_f32(yd, xd, s->O, s->R, s->I, op);
        }
        return OTL_OK;
    }
    if (s->simple && dt == OTL_DTYPE_DOUBLE) {
        const double *xd = x->data;
        double *yd = y->data;
        if (s->I == 1) {
            #pragma omp parallel for if (s->O * s->R > 32768)
            for (int64_t o = 0; o < s->O; o++)
                yd[o] = red_row_f64(xd + o * s->R, s->R, op);
        } else {
            red_cols_f64(yd, xd, s->O, s->R, s->I, op);
        }
        return OTL_OK;
    }
    int fl = is_float_type(dt);
    size_t n = (size_t)(s->nout * s->R);
    void *rows = malloc((n ? n : 1) * 8);
    if (!rows)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory (%zu bytes of scratch)", n * 8);
    gather_rows(rows, fl ? OTL_DTYPE_DOUBLE : OTL_DTYPE_INT64, x->data, dt, s);
    for (int64_t o = 0; o < s->nout; o++) {
        if (fl)
            otl_set_f(y->data, dt, o, red_row_f64((double *)rows + o * s->R, s->R, op));
        else
            otl_set_i(y->data, dt, o, red_row_i64((int64_t *)rows + o * s->R, s->R, op));
    }
    free(rows);
    return OTL_OK;
}

#define REDUCE_OP(NAME, OP)                                                                       \
    static otl_status NAME##_infer(otl_kctx *k)                                                   \
    {                                                                                             \
        return reduce_infer_op(k, OP);                                                            \
    }                                                                                             \
    const otl_op otl_op_##NAME = {                                                                \
        .op_type = #NAME, .domain = "", .since = 1, .until = 22,                                  \
        .infer = NAME##_infer, .forward = reduce_forward,                                         \
        .grad_inputs = 1, .grad = reduce_grad,                                                    \
    };

REDUCE_OP(ReduceSum, RED_SUM)
REDUCE_OP(ReduceMean, RED_MEAN)
REDUCE_OP(ReduceMax, RED_MAX)
REDUCE_OP(ReduceMin, RED_MIN)
REDUCE_OP(ReduceProd, RED_PROD)
REDUCE_OP(ReduceL1, RED_L1)
REDUCE_OP(ReduceL2, RED_L2)
REDUCE_OP(ReduceSumSquare, RED_SUMSQ)
REDUCE_OP(ReduceLogSum, RED_LOGSUM)
REDUCE_OP(ReduceLogSumExp, RED_LSE)

/* ---------------------------------------------------------------- ArgMax / ArgMin */

typedef struct arg_state {
    int is_max, last;
    int64_t O, R, I;
} arg_state;

static otl_status arg_infer(otl_kctx *k, int is_max)
{
    static const int types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_BFLOAT16,
                                OTL_DTYPE_INT64, OTL_DTYPE_INT32, OTL_DTYPE_INT16, OTL_DTYPE_INT8,
                                OTL_DTYPE_UINT32, OTL_DTYPE_UINT16, OTL_DTYPE_UINT8, 0};
    otl_status st = otl_check_in(k, 0, types);
    if (st)
        return st;
    const otl_rt *x = k->in[0];
    arg_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->is_max = is_max;
    int64_t axis, keepdims, last = 0;
    int a;
    if ((st = otl_attr_int(k, "axis", 0, &axis)) || (st = otl_attr_int(k, "keepdims", 1, &keepdims)))
        return st;
    if (k->opset >= 12 && (st = otl_attr_int(k, "select_last_index", 0, &last)))
        return st;
    s->last = last != 0;
    if (x->rank == 0)
        return otl_kfail(k, OTL_ERR_INPUT, "input '%s' is a scalar; %s needs rank >= 1", x->name, k->node->op_type);
    if ((st = otl_axis(k, axis, x->rank, &a)))
        return st;
    s->O = s->I = 1;
    int64_t yd[OTL_MAX_RANK];
    int ry = 0;
    for (int i = 0; i < x->rank; i++) {
        if (i < a)
            s->O *= x->dims[i];
        else if (i > a)
            s->I *= x->dims[i];
        if (i != a || keepdims)
            yd[ry++] = i == a ? 1 : x->dims[i];
    }
    s->R = x->dims[a];
    if (s->R == 0 && s->O * s->I > 0)
        return otl_kfail(k, OTL_ERR_INPUT, "%s over an empty axis", k->node->op_type);
    return otl_rt_set(k, k->out[0], OTL_DTYPE_INT64, ry, yd);
}

static otl_status argmax_infer(otl_kctx *k)
{
    return arg_infer(k, 1);
}

static otl_status argmin_infer(otl_kctx *k)
{
    return arg_infer(k, 0);
}

/* better: v beats the current best b (NaN beats everything, as in NumPy; ties go to the
 * first index, or to the last with select_last_index). */
#define ARG_KERNEL(NAME, T, LOAD)                                                                 \
    static void NAME(int64_t *y, const void *xv, int dt, const arg_state *s)                      \
    {                                                                                             \
        (void)dt;                                                                                 \
        _Pragma("omp parallel for if (s->O * s->R * s->I > 32768)")                               \
        for (int64_t t = 0; t < s->O * s->I; t++) {                                               \
            int64_t o = t / s->I, i = t % s->I, base = o * s->R * s->I + i, best = 0;             \
            T b = LOAD(xv, dt, base);                                                             \
            for (int64_t r = 1; r < s->R; r++) {                                                  \
                T v = LOAD(xv, dt, base + r * s->I);                                              \
                if (b != b && !(s->last && v != v))                                               \
                    continue;                                                                     \
                int take = v != v || (s->is_max ? v > b : v < b) || (s->last && v == b);          \
                if (take) {                                                                       \
                    b = v;                                                                        \
                    best = r;                                                                     \
                }                                                                                 \
            }                                                                                     \
            y[t] = best;                                                                          \
        }                                                                                         \
    }

#define LOAD_F32(x, dt, i) (((const float *)(x))[i])
#define LOAD_F64(x, dt, i) (((const double *)(x))[i])
#define LOAD_I64(x, dt, i) (((const int64_t *)(x))[i])
#define LOAD_ANY(x, dt, i) otl_get_f(x, dt, i)
ARG_KERNEL(arg_f32, float, LOAD_F32)
ARG_KERNEL(arg_f64, double, LOAD_F64)
ARG_KERNEL(arg_i64, int64_t, LOAD_I64)
ARG_KERNEL(arg_any, double, LOAD_ANY)

static otl_status arg_forward(otl_kctx *k)
{
    arg_state *s = k->state;
    if (k->out[0]->numel == 0)
        return OTL_OK;
    const void *x = k->in[0]->data;
    int64_t *y = k->out[0]->data;
    switch (k->in[0]->dtype) {
    case OTL_DTYPE_FLOAT: arg_f32(y, x, OTL_DTYPE_FLOAT, s); break;
    case OTL_DTYPE_DOUBLE: arg_f64(y, x, OTL_DTYPE_DOUBLE, s); break;
    case OTL_DTYPE_INT64: arg_i64(y, x, OTL_DTYPE_INT64, s); break;
    default: arg_any(y, x, k->in[0]->dtype, s); break; /* exact in double: at most 32-bit values */
    }
    return OTL_OK;
}

/* Indices carry no gradient: grad_inputs = 0 makes autodiff stop here (the rule never runs). */
static otl_status arg_grad(otl_gctx *c)
{
    (void)c;
    return OTL_OK;
}

const otl_op otl_op_ArgMax = {
    .op_type = "ArgMax", .domain = "", .since = 1, .until = 22,
    .infer = argmax_infer, .forward = arg_forward,
    .grad_inputs = 0, .grad = arg_grad,
};

const otl_op otl_op_ArgMin = {
    .op_type = "ArgMin", .domain = "", .since = 1, .until = 22,
    .infer = argmin_infer, .forward = arg_forward,
    .grad_inputs = 0, .grad = arg_grad,
};

/* ================================================================ reverse mode */

static const char *const red_names[] = {
    [RED_SUM] = "ReduceSum", [RED_MEAN] = "ReduceMean", [RED_MAX] = "ReduceMax", [RED_MIN] = "ReduceMin",
    [RED_PROD] = "ReduceProd", [RED_L1] = "ReduceL1", [RED_L2] = "ReduceL2", [RED_SUMSQ] = "ReduceSumSquare",
    [RED_LOGSUM] = "ReduceLogSum", [RED_LSE] = "ReduceLogSumExp",
};

static int red_code(const char *op_type)
{
    for (int i = 0; i < (int)(sizeof red_names / sizeof *red_names); i++)
        if (strcmp(red_names[i], op_type) == 0)
            return i;
    return -1;
}

/* Which forward tensors the derivative of each reduction reads. */
static int grad_needs_x(int op)
{
    return op != RED_SUM && op != RED_MEAN && op != RED_LOGSUM;
}

static int grad_needs_y(int op)
{
    return op == RED_MAX || op == RED_MIN || op == RED_L2 || op == RED_LOGSUM || op == RED_LSE;
}

static otl_status rgrad_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, red_float_types)))
        return st;
    const otl_rt *dy = k->in[0];
    reduce_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    const char *opname;
    if ((st = otl_attr_str(k, "op", "ReduceSum", &opname)))
        return st;
    if ((s->op = red_code(opname)) < 0)
        return otl_kfail(k, OTL_ERR_INPUT, "unknown reduction '%s'", opname);
    int64_t xd[OTL_MAX_RANK], axes[OTL_MAX_RANK], keepdims, noop, yd[OTL_MAX_RANK];
    int rank, na, ry = 0;
    if ((st = otl_const_ints(k, 1, xd, OTL_MAX_RANK, &rank)) || (st = otl_attr_int(k, "keepdims", 1, &keepdims)) ||
        (st = otl_attr_int(k, "noop_with_empty_axes", 0, &noop)))
        return st;
    if (otl_has_in(k, 4))
        st = otl_const_ints(k, 4, axes, OTL_MAX_RANK, &na);
    else
        st = otl_attr_ints(k, "axes", axes, OTL_MAX_RANK, &na);
    if (st || (st = reduce_plan(k, s, rank, xd, axes, na < 0 ? 0 : na, keepdims, noop, &ry, yd)))
        return st;
    int same = dy->rank == ry;
    for (int i = 0; same && i < ry; i++)
        same = dy->dims[i] == yd[i];
    if (!same)
        return otl_kfail(k, OTL_ERR_INPUT, "gradient '%s' does not have the reduction's output shape", dy->name);
    otl_rt xs = {.rank = rank};
    memcpy(xs.dims, xd, sizeof xd);
    for (int i = 2; i < 4; i++) {
        int need = !s->noop && (i == 2 ? grad_needs_x(s->op) : grad_needs_y(s->op));
        if (!need)
            continue;
        if (!otl_has_in(k, i))
            return otl_kfail(k, OTL_ERR_INPUT, "%s's gradient needs input %d (%s)", opname, i, i == 2 ? "X" : "Y");
        const otl_rt *v = k->in[i];
        const int64_t *want = i == 2 ? xd : yd;
        int wr = i == 2 ? rank : ry;
        same = v->dtype == dy->dtype && v->rank == wr;
        for (int d = 0; same && d < wr; d++)
            same = v->dims[d] == want[d];
        if (!same)
            return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s' differs from the forward's in shape or dtype", i, v->name);
    }
    return otl_rt_set(k, k->out[0], dy->dtype, rank, xd);
}

/* dX for the group of output element o (double arithmetic, any float dtype). */
static void rgrad_group(otl_kctx *k, const reduce_state *s, int64_t o)
{
    const otl_rt *dyv = k->in[0], *xv = otl_has_in(k, 2) ? k->in[2] : NULL, *yv = otl_has_in(k, 3) ? k->in[3] : NULL;
    otl_rt *dxv = k->out[0];
    int dt = dyv->dtype;
    double gy = otl_get_f(dyv->data, dt, o), y = yv ? otl_get_f(yv->data, dt, o) : 0.0;
    int64_t base = odometer(o, s->nk, s->kd, s->ks);
    double p = 1.0;
    int64_t count = 0;
    if (s->op == RED_MAX || s->op == RED_MIN || s->op == RED_PROD) {
        for (int64_t r = 0; r < s->R; r++) {
            double x = otl_get_f(xv->data, dt, base + odometer(r, s->nr, s->rd, s->rs));
            if (s->op == RED_PROD) {
                if (x == 0.0)
                    count++; /* zeros */
                else
                    p *= x;
            } else if (x == y) {
                count++; /* ties */
            }
        }
    }
    for (int64_t r = 0; r < s->R; r++) {
        int64_t off = base + odometer(r, s->nr, s->rd, s->rs);
        double x = xv ? otl_get_f(xv->data, dt, off) : 0.0, d;
        switch (s->op) {
        case RED_SUM: d = gy; break;
        case RED_MEAN: d = gy / (double)s->R; break;
        case RED_SUMSQ: d = 2.0 * x * gy; break;
        case RED_L1: d = x > 0 ? gy : x < 0 ? -gy : 0.0; break;
        case RED_L2: d = y == 0.0 ? 0.0 : gy * x / y; break;
        case RED_LOGSUM: d = gy / exp(y); break;
        case RED_LSE: d = gy * exp(x - y); break;
        case RED_MAX: case RED_MIN: d = count && x == y ? gy / (double)count : 0.0; break;
        case RED_PROD: d = count == 0 ? gy * p / x : count == 1 && x == 0.0 ? gy * p : 0.0; break;
        default: d = 0.0; break;
        }
        otl_set_f(dxv->data, dt, off, d);
    }
}

static otl_status rgrad_forward(otl_kctx *k)
{
    const reduce_state *s = k->state;
    const otl_rt *dy = k->in[0];
    otl_rt *dx = k->out[0];
    if (dx->numel == 0)
        return OTL_OK;
    if (s->noop) { /* Y = X */
        memcpy(dx->data, dy->data, dx->nbytes);
        return OTL_OK;
    }
    if (dy->dtype == OTL_DTYPE_FLOAT && s->simple && (s->op == RED_SUM || s->op == RED_MEAN)) {
        const float *g = dy->data;
        float *d = dx->data, sc = s->op == RED_MEAN ? 1.0f / (float)s->R : 1.0f;
        int64_t O = s->O, R = s->R, I = s->I;
        #pragma omp parallel for if (O * R * I > 32768)
        for (int64_t t = 0; t < O * R; t++) {
            const float *go = g + (t / R) * I;
            float *dt = d + t * I;
            for (int64_t i = 0; i < I; i++)
                dt[i] = go[i] * sc;
        }
        return OTL_OK;
    }
    #pragma omp parallel for if (s->nout * s->R > 32768)
    for (int64_t o = 0; o < s->nout; o++)
        rgrad_group(k, s, o);
    return OTL_OK;
}

const otl_op otl_op_ReduceGrad = {
    .op_type = "ReduceGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = rgrad_infer, .forward = rgrad_forward,
};

/* dX = ReduceGrad(dY, Shape(X), [X], [Y], [axes]) with the forward's attributes. */
static otl_status reduce_grad(otl_gctx *c)
{
    if (!c->need[0])
        return OTL_OK;
    const otl_node *n = c->node;
    int op = red_code(n->op_type);
    if (!c->dy[0] || op < 0)
        return otl_error_set(c->err, OTL_ERR_INTERNAL, "%s: node '%s' (%s): no output gradient", c->file, n->name,
                             n->op_type);
    const char *x = n->inputs[0];
    const char *shape = otl_gemit1(c, "", "Shape", 1, &x, NULL);
    if (!shape)
        return OTL_OK; /* failure recorded */
    const char *in[5] = {c->dy[0], shape, grad_needs_x(op) ? x : "", grad_needs_y(op) ? n->outputs[0] : "",
                         n->n_inputs > 1 ? n->inputs[1] : ""};
    int n_in = 5;
    while (n_in > 2 && !*in[n_in - 1])
        n_in--;
    otl_node *g;
    const char *dx = otl_gemit1(c, OTL_GRAD_DOMAIN, "ReduceGrad", n_in, in, &g);
    otl_status st = g ? otl_gattr_copy(c, g) : OTL_OK;
    if (!st && g)
        st = otl_gattr_str(c, g, "op", n->op_type);
    otl_grad_set(c, 0, dx);
    return st;
}
