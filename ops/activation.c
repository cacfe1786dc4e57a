/* activation.c - activations: the single-input ones on the unary engine (ops/unary.c: Relu,
 * LeakyRelu, Elu, Selu, Celu, Sigmoid, HardSigmoid, HardSwish, Tanh, Gelu, Softplus, Softsign,
 * Mish, ThresholdedRelu, Shrink) and PRelu (slope broadcast to X) and Clip (bounds as attributes
 * before opset 11, optional scalar inputs since). The single-input ones and Clip accept oneDNN
 * blocked layouts (see ops/unary.h). Differentiable inputs: X; PRelu's slope. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/broadcast.h"
#include "ops/unary.h"

OTL_UNARY_OP(Relu, "Relu", "", 6, 22, OTL_U_RELU)
OTL_UNARY_OP(LeakyRelu, "LeakyRelu", "", 6, 22, OTL_U_LEAKY_RELU)
OTL_UNARY_OP(Elu, "Elu", "", 6, 22, OTL_U_ELU)
OTL_UNARY_OP(Selu, "Selu", "", 6, 22, OTL_U_SELU)
OTL_UNARY_OP(Celu, "Celu", "", 12, 22, OTL_U_CELU)
OTL_UNARY_OP(Sigmoid, "Sigmoid", "", 6, 22, OTL_U_SIGMOID)
OTL_UNARY_OP(HardSigmoid, "HardSigmoid", "", 6, 22, OTL_U_HARD_SIGMOID)
OTL_UNARY_OP(HardSwish, "HardSwish", "", 14, 22, OTL_U_HARD_SWISH)
OTL_UNARY_OP(Tanh, "Tanh", "", 6, 22, OTL_U_TANH)
OTL_UNARY_OP(Gelu, "Gelu", "", 20, 20, OTL_U_GELU)
OTL_UNARY_OP(GeluMs, "Gelu", "com.microsoft", 1, 1, OTL_U_GELU)
OTL_UNARY_OP(Softplus, "Softplus", "", 1, 22, OTL_U_SOFTPLUS)
OTL_UNARY_OP(Softsign, "Softsign", "", 1, 22, OTL_U_SOFTSIGN)
OTL_UNARY_OP(Mish, "Mish", "", 18, 22, OTL_U_MISH)
OTL_UNARY_OP(ThresholdedRelu, "ThresholdedRelu", "", 10, 22, OTL_U_THRESHOLDED_RELU)
OTL_UNARY_OP(Shrink, "Shrink", "", 9, 22, OTL_U_SHRINK)

/* ---------------------------------------------------------------- PRelu */

typedef struct prelu_state {
    otl_bcast b;
} prelu_state;

typedef struct prelu_ctx {
    int dt;
    const void *x, *slope;
    void *y;
    int64_t sx, ss;
} prelu_ctx;

static const int prelu_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_BFLOAT16,
                                  OTL_DTYPE_INT32, OTL_DTYPE_INT64, OTL_DTYPE_UINT32, OTL_DTYPE_UINT64, 0};

static otl_status prelu_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, prelu_types)) || (st = otl_check_in(k, 1, prelu_types)))
        return st;
    const otl_rt *x = k->in[0], *sl = k->in[1];
    if (x->dtype != sl->dtype)
        return otl_kfail(k, OTL_ERR_INPUT, "X and slope have different dtypes (%s and %s)",
                         otl_dtype_name(x->dtype), otl_dtype_name(sl->dtype));
    prelu_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    int ranks[2] = {x->rank, sl->rank};
    int64_t cdims[OTL_MAX_RANK];
    const int64_t *dims[2] = {x->dims, sl->dims};
    const char *names[2] = {x->name, sl->name};
    if (k->opset < 7 && sl->rank == 1 && x->rank >= 2 && sl->dims[0] != 1 && sl->dims[0] == x->dims[1]) {
        /* PRelu-6: a 1-D slope of C values is per channel (axis 1) */
        cdims[0] = sl->dims[0];
        for (int d = 1; d < x->rank - 1; d++)
            cdims[d] = 1;
        ranks[1] = x->rank - 1;
        dims[1] = cdims;
    }
    if ((st = otl_bcast_init_dims(k, &s->b, 2, ranks, dims, names)))
        return st;
    int ok = s->b.rank == x->rank;
    for (int d = 0; ok && d < x->rank; d++)
        ok = s->b.dims[d] == x->dims[d];
    if (!ok)
        return otl_kfail(k, OTL_ERR_INPUT, "slope '%s' (rank %d) does not broadcast to X's shape (unidirectional)",
                         sl->name, sl->rank);
    return otl_rt_like(k, k->out[0], x);
}

static void prelu_row(void *ctx, int64_t o, const int64_t *off, int64_t n)
{
    const prelu_ctx *c = ctx;
    if (c->dt == OTL_DTYPE_FLOAT) {
        const float *x = (const float *)c->x + off[0], *sl = (const float *)c->slope + off[1];
        float *y = (float *)c->y + o;
        if (c->ss) {
            #pragma omp simd
            for (int64_t i = 0; i < n; i++) /* max/min shapes vectorize, a select would not */
                y[i] = (x[i] > 0 ? x[i] : 0.0f) + sl[i] * (x[i] < 0 ? x[i] : 0.0f);
        } else {
            const float a = sl[0];
            #pragma omp simd
            for (int64_t i = 0; i < n; i++)
                y[i] = (x[i] > 0 ? x[i] : 0.0f) + a * (x[i] < 0 ? x[i] : 0.0f);
        }
        return;
    }
    int is_f = otl_dtype_is_float(c->dt);
    for (int64_t i = 0; i < n; i++) {
        int64_t jx = off[0] + i * c->sx, js = off[1] + i * c->ss;
        if (is_f) {
            double v = otl_get_f(c->x, c->dt, jx);
            otl_set_f(c->y, c->dt, o + i, v < 0 ? otl_get_f(c->slope, c->dt, js) * v : v);
        } else {
            int64_t v = otl_get_i(c->x, c->dt, jx);
            if (c->dt == OTL_DTYPE_UINT32 || c->dt == OTL_DTYPE_UINT64)
                otl_set_i(c->y, c->dt, o + i, v); /* never negative */
            else
                otl_set_i(c->y, c->dt, o + i, v < 0 ? (int64_t)((uint64_t)otl_get_i(c->slope, c->dt, js) * (uint64_t)v) : v);
        }
    }
}

static otl_status prelu_forward(otl_kctx *k)
{
    prelu_state *s = k->state;
    if (s->b.numel == 0)
        return OTL_OK;
    prelu_ctx c = {.dt = k->in[0]->dtype, .x = k->in[0]->data, .slope = k->in[1]->data, .y = k->out[0]->data,
                   .sx = s->b.inner[0], .ss = s->b.inner[1]};
    otl_bcast_run(&s->b, prelu_row, &c, c.dt == OTL_DTYPE_FLOAT ? 32768 : 4096);
    return OTL_OK;
}

const otl_op otl_op_PRelu = {
    .op_type = "PRelu", .domain = "", .since = 6, .until = 22,
    .infer = prelu_infer, .forward = prelu_forward,
};

/* ---------------------------------------------------------------- Clip */

typedef struct clip_state {
    float amin, amax;          /* opset < 11: attributes */
    float lo, hi;              /* blocked float32 input with bounds known at plan time */
    int blocked_dnnl;
    otl_eltwise e;
    otl_plain pin;             /* other blocked inputs: plain copy */
} clip_state;

typedef struct clip_ctx {
    int dt;
    const void *x;
    void *y;
    double lo, hi;             /* floats */
    int64_t ilo, ihi;          /* integers */
    int has_lo, has_hi;
} clip_ctx;

static const int clip_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_BFLOAT16,
                                 OTL_DTYPE_INT64, OTL_DTYPE_INT32, OTL_DTYPE_INT16, OTL_DTYPE_INT8,
                                 OTL_DTYPE_UINT64, OTL_DTYPE_UINT32, OTL_DTYPE_UINT16, OTL_DTYPE_UINT8, 0};
static const int clip_float_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, 0};

static otl_status clip_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, k->opset >= 12 ? clip_types : clip_float_types)))
        return st;
    clip_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    if (k->opset < 11) {
        if ((st = otl_attr_float(k, "min", -FLT_MAX, &s->amin)) || (st = otl_attr_float(k, "max", FLT_MAX, &s->amax)))
            return st;
    } else {
        for (int i = 1; i <= 2; i++) {
            if (!otl_has_in(k, i))
                continue;
            const otl_rt *b = k->in[i];
            if (b->blocked)
                return otl_kfail(k, OTL_ERR_UNSUPPORTED, "input %d '%s' in a blocked layout", i, b->name);
            if (b->dtype != k->in[0]->dtype)
                return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s' has dtype %s, X has %s", i, b->name,
                                 otl_dtype_name(b->dtype), otl_dtype_name(k->in[0]->dtype));
            if (b->numel != 1)
                return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s' must be a scalar, has %lld elements", i,
                                 b->name, (long long)b->numel);
        }
    }
    /* a blocked float32 input with bounds known now (lo <= hi) stays blocked through oneDNN */
    const otl_rt *x = k->in[0];
    if (x->blocked && x->dtype == OTL_DTYPE_FLOAT) {
        int known = 1;
        s->lo = k->opset < 11 ? s->amin : -INFINITY;
        s->hi = k->opset < 11 ? s->amax : INFINITY;
        for (int i = 1; k->opset >= 11 && i <= 2; i++) {
            if (!otl_has_in(k, i))
                continue;
            if (!k->in[i]->is_const) {
                known = 0;
                continue;
            }
            float v = *(const float *)k->in[i]->data;
            *(i == 1 ? &s->lo : &s->hi) = v;
        }
        if (known && s->lo <= s->hi) {
            s->blocked_dnnl = 1;
            return otl_rt_set_md(k, k->out[0], x->dtype, x->rank, x->dims, &x->md);
        }
    }
    return otl_rt_like(k, k->out[0], k->in[0]);
}

static otl_status clip_prepare(otl_kctx *k)
{
    clip_state *s = k->state;
    if (s->blocked_dnnl)
        return otl_eltwise_create(k, dnnl_eltwise_clip, s->lo, s->hi, &k->in[0]->md, &s->e);
    return otl_plain_prepare(k, k->in[0], &s->pin);
}

static void clip_release(otl_kctx *k)
{
    clip_state *s = k->state;
    if (!s)
        return;
    otl_eltwise_release(&s->e);
    otl_plain_release(&s->pin);
}

static void clip_range(void *ctx, int64_t start, int64_t end)
{
    const clip_ctx *c = ctx;
    if (c->dt == OTL_DTYPE_FLOAT) {
        const float *x = c->x;
        float *y = c->y;
        const float lo = c->has_lo ? (float)c->lo : -INFINITY, hi = c->has_hi ? (float)c->hi : INFINITY;
        #pragma omp simd
        for (int64_t i = start; i < end; i++) {
            float v = x[i] < lo ? lo : x[i];
            y[i] = v > hi ? hi : v;
        }
        return;
    }
    if (otl_dtype_is_float(c->dt)) {
        for (int64_t i = start; i < end; i++) {
            double v = otl_get_f(c->x, c->dt, i);
            if (c->has_lo && v < c->lo)
                v = c->lo;
            if (c->has_hi && v > c->hi)
                v = c->hi;
            otl_set_f(c->y, c->dt, i, v);
        }
        return;
    }
    if (c->dt == OTL_DTYPE_UINT64) {
        const uint64_t *x = c->x;
        uint64_t *y = c->y;
        for (int64_t i = start; i < end; i++) {
            uint64_t v = x[i];
            if (c->has_lo && v < (uint64_t)c->ilo)
                v = (uint64_t)c->ilo;
            if (c->has_hi && v > (uint64_t)c->ihi)
                v = (uint64_t)c->ihi;
            y[i] = v;
        }
        return;
    }
    for (int64_t i = start; i < end; i++) {
        int64_t v = otl_get_i(c->x, c->dt, i);
        if (c->has_lo && v < c->ilo)
            v = c->ilo;
        if (c->has_hi && v > c->ihi)
            v = c->ihi;
        otl_set_i(c->y, c->dt, i, v);
    }
}

static otl_status clip_forward(otl_kctx *k)
{
    clip_state *s = k->state;
    if (k->out[0]->numel == 0)
        return OTL_OK;
    if (s->e.prim)
        return otl_eltwise_run(k, &s->e, k->in[0]->data, k->out[0]->data);
    clip_ctx c = {.dt = k->in[0]->dtype, .y = k->out[0]->data};
    otl_status st = otl_plain_get(k, k->in[0], &s->pin, &c.x);
    if (st)
        return st;
    if (k->opset < 11) {
        c.has_lo = c.has_hi = 1;
        c.lo = s->amin;
        c.hi = s->amax;
    } else {
        for (int i = 1; i <= 2; i++) {
            if (!otl_has_in(k, i))
                continue;
            const otl_rt *b = k->in[i];
            double f = otl_get_f(b->data, b->dtype, 0);
            int64_t v = otl_get_i(b->data, b->dtype, 0);
            if (i == 1) {
                c.has_lo = 1;
                c.lo = f;
                c.ilo = v;
            } else {
                c.has_hi = 1;
                c.hi = f;
                c.ihi = v;
            }
        }
    }
    otl_parallel_range(k->out[0]->numel, c.dt == OTL_DTYPE_FLOAT ? 32768 : 4096, clip_range, &c);
    return OTL_OK;
}

const otl_op otl_op_Clip = {
    .op_type = "Clip", .domain = "", .since = 6, .until = 22,
    .flags = OTL_OPF_ANY_LAYOUT,
    .infer = clip_infer, .prepare = clip_prepare, .forward = clip_forward, .release = clip_release,
};
