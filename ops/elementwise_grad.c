/* elementwise_grad.c - private backward kernels (domain onnx_tl) of the arithmetic ops of
 * ops/elementwise.c, whose gradient rules emit them:
 *   PowGrad(dY, A, B) -> (dA, dB)   dA = dY * B * A^(B-1) (0 where B == 0),
 *                                   dB = dY * A^B * ln A (0 where A == 0 and B >= 0), as PyTorch;
 *                                   both in dY's (the broadcast) shape, either output optional
 *   MaxMinGrad(dY, X0, ..., Xn-1) -> (dX0, ..., dXn-1)   attribute min (0: Max, 1: Min): dY goes
 *                                   to the inputs equal to the result, split evenly among ties
 *                                   (PyTorch's maximum/minimum); outputs in dY's shape, optional
 *   Scale(X) -> X * scale            attribute scale (float)
 * The rules reduce the broadcast-shaped outputs with ReduceSumTo. None is differentiable. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/broadcast.h"

#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

static const int floats[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_BFLOAT16, 0};

/* ---------------------------------------------------------------- PowGrad */

typedef struct pow_grad_ctx {
    int dt, dtb;
    const void *dy, *a, *b;
    void *da, *db;
    int64_t sa, sb;
} pow_grad_ctx;

static otl_status pow_grad_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, floats)) || (st = otl_check_in(k, 1, floats)) || (st = otl_check_in(k, 2, NULL)))
        return st;
    const otl_rt *dy = k->in[0];
    if (k->in[1]->dtype != dy->dtype)
        return otl_kfail(k, OTL_ERR_INPUT, "gradient and base differ in dtype");
    otl_bcast *b = calloc(1, sizeof *b);
    if (!b)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = b;
    const otl_rt *in[3] = {dy, k->in[1], k->in[2]};
    if ((st = otl_bcast_init(k, b, 3, in)))
        return st;
    if (!b->same[0])
        return otl_kfail(k, OTL_ERR_INPUT, "gradient '%s' does not have the broadcast shape", dy->name);
    for (int i = 0; i < 2; i++)
        if (otl_has_out(k, i) && (st = otl_rt_like(k, k->out[i], dy)))
            return st;
    return OTL_OK;
}

static void pow_grad_row(void *ctx, int64_t o, const int64_t *off, int64_t n)
{
    const pow_grad_ctx *c = ctx;
    if (c->dt == OTL_DTYPE_FLOAT && c->dtb == OTL_DTYPE_FLOAT) {
        const float *g = (const float *)c->dy + o, *a = (const float *)c->a + off[1], *b = (const float *)c->b + off[2];
        if (c->da) {
            float *da = (float *)c->da + o;
            for (int64_t i = 0; i < n; i++) {
                const float x = a[i * c->sa], e = b[i * c->sb];
                da[i] = e == 0.0f ? 0.0f : e == 2.0f ? 2.0f * x * g[i] : g[i] * e * powf(x, e - 1.0f);
            }
        }
        if (c->db) {
            float *db = (float *)c->db + o;
            for (int64_t i = 0; i < n; i++) {
                const float x = a[i * c->sa], e = b[i * c->sb];
                db[i] = x == 0.0f && e >= 0.0f ? 0.0f : g[i] * powf(x, e) * logf(x);
            }
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        double g = otl_get_f(c->dy, c->dt, o + i), x = otl_get_f(c->a, c->dt, off[1] + i * c->sa);
        double e = otl_get_f(c->b, c->dtb, off[2] + i * c->sb);
        if (c->da)
            otl_set_f(c->da, c->dt, o + i, e == 0.0 ? 0.0 : g * e * pow(x, e - 1.0));
        if (c->db)
            otl_set_f(c->db, c->dt, o + i, x == 0.0 && e >= 0.0 ? 0.0 : g * pow(x, e) * log(x));
    }
}

static otl_status pow_grad_forward(otl_kctx *k)
{
    const otl_bcast *b = k->state;
    if (b->numel == 0)
        return OTL_OK;
    pow_grad_ctx c = {
        .dt = k->in[0]->dtype, .dtb = k->in[2]->dtype, .dy = k->in[0]->data, .a = k->in[1]->data,
        .b = k->in[2]->data, .da = otl_has_out(k, 0) ? k->out[0]->data : NULL,
        .db = otl_has_out(k, 1) ? k->out[1]->data : NULL, .sa = b->inner[1], .sb = b->inner[2],
    };
    otl_bcast_run(b, pow_grad_row, &c, 4096);
    return OTL_OK;
}

const otl_op otl_op_PowGrad = {
    .op_type = "PowGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = pow_grad_infer, .forward = pow_grad_forward,
};

/* ---------------------------------------------------------------- MaxMinGrad */

typedef struct maxmin_state {
    int is_min;
    int n;                          /* inputs X */
    int rank;
    int64_t dims[OTL_MAX_RANK];     /* dY's shape */
    int64_t (*strides)[OTL_MAX_RANK]; /* (n) element strides of Xj over dY's shape */
} maxmin_state;

static otl_status maxmin_grad_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, floats)))
        return st;
    const otl_rt *dy = k->in[0];
    int n = k->n_in - 1;
    if (n < 1 || k->n_out != n)
        return otl_kfail(k, OTL_ERR_INPUT, "expected one output per input X, got %d inputs and %d outputs", n,
                         k->n_out);
    maxmin_state *s = calloc(1, sizeof *s);
    if (!s || !(s->strides = calloc((size_t)n, sizeof *s->strides))) {
        free(s);
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    }
    k->state = s;
    int64_t is_min;
    if ((st = otl_attr_int(k, "min", 0, &is_min)))
        return st;
    s->is_min = is_min != 0;
    s->n = n;
    s->rank = dy->rank;
    memcpy(s->dims, dy->dims, sizeof s->dims);
    for (int j = 0; j < n; j++) {
        if ((st = otl_check_in(k, j + 1, floats)))
            return st;
        const otl_rt *x = k->in[j + 1];
        if (x->dtype != dy->dtype)
            return otl_kfail(k, OTL_ERR_INPUT, "input '%s' differs from the gradient in dtype", x->name);
        otl_bcast b;
        const otl_rt *in[2] = {dy, x};
        if ((st = otl_bcast_init(k, &b, 2, in)))
            return st;
        if (!b.same[0])
            return otl_kfail(k, OTL_ERR_INPUT, "input '%s' broadcasts beyond the gradient's shape", x->name);
        memcpy(s->strides[j], b.strides[1], sizeof s->strides[j]);
    }
    for (int j = 0; j < n; j++)
        if (otl_has_out(k, j) && (st = otl_rt_like(k, k->out[j], dy)))
            return st;
    return OTL_OK;
}

static void maxmin_grad_release(otl_kctx *k)
{
    maxmin_state *s = k->state;
    if (s)
        free(s->strides);
}

typedef struct maxmin_ctx {
    const maxmin_state *s;
    otl_kctx *k;
} maxmin_ctx;

/* Xj's element under dY's element o. */
static double maxmin_x(const maxmin_state *s, const otl_kctx *k, int j, int64_t o)
{
    int64_t off = 0;
    for (int d = s->rank - 1; d >= 0; d--) {
        off += (o % s->dims[d]) * s->strides[j][d];
        o /= s->dims[d];
    }
    return otl_get_f(k->in[j + 1]->data, k->in[j + 1]->dtype, off);
}

static void maxmin_grad_range(void *ctx, int64_t start, int64_t end)
{
    const maxmin_ctx *c = ctx;
    const maxmin_state *s = c->s;
    otl_kctx *k = c->k;
    const int dt = k->in[0]->dtype;
    for (int64_t o = start; o < end; o++) {
        /* the result and how many inputs reach it (NaN inputs never do) */
        double best = 0.0;
        int count = 0;
        for (int j = 0; j < s->n; j++) {
            double x = maxmin_x(s, k, j, o);
            if (x != x)
                continue;
            if (count == 0 || (s->is_min ? x < best : x > best)) {
                best = x;
                count = 1;
            } else if (x == best) {
                count++;
            }
        }
        double g = otl_get_f(k->in[0]->data, dt, o);
        for (int j = 0; j < s->n; j++)
            if (otl_has_out(k, j))
                otl_set_f(k->out[j]->data, dt, o, count && maxmin_x(s, k, j, o) == best ? g / count : 0.0);
    }
}

static otl_status maxmin_grad_forward(otl_kctx *k)
{
    maxmin_ctx c = {.s = k->state, .k = k};
    otl_parallel_range(k->in[0]->numel, 4096, maxmin_grad_range, &c);
    return OTL_OK;
}

const otl_op otl_op_MaxMinGrad = {
    .op_type = "MaxMinGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = maxmin_grad_infer, .forward = maxmin_grad_forward, .release = maxmin_grad_release,
};

/* ---------------------------------------------------------------- Scale */

typedef struct scale_ctx {
    int dt;
    float scale;
    const void *x;
    void *y;
} scale_ctx;

static otl_status scale_infer(otl_kctx *k)
{
    otl_status st = otl_check_in(k, 0, floats);
    if (st)
        return st;
    scale_ctx *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    if ((st = otl_attr_float(k, "scale", 1.0f, &s->scale)))
        return st;
    return otl_rt_like(k, k->out[0], k->in[0]);
}

static void scale_range(void *ctx, int64_t start, int64_t end)
{
    const scale_ctx *c = ctx;
    if (c->dt == OTL_DTYPE_FLOAT) {
        const float *x = c->x, a = c->scale;
        float *y = c->y;
        #pragma omp simd
        for (int64_t i = start; i < end; i++)
            y[i] = a * x[i];
        return;
    }
    for (int64_t i = start; i < end; i++)
        otl_set_f(c->y, c->dt, i, (double)c->scale * otl_get_f(c->x, c->dt, i));
}

static otl_status scale_forward(otl_kctx *k)
{
    scale_ctx c = *(const scale_ctx *)k->state;
    c.dt = k->in[0]->dtype;
    c.x = k->in[0]->data;
    c.y = k->out[0]->data;
    otl_parallel_range(k->in[0]->numel, 32768, scale_range, &c);
    return OTL_OK;
}

const otl_op otl_op_Scale = {
    .op_type = "Scale", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = scale_infer, .forward = scale_forward,
};
