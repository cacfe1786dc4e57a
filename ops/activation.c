/* activation.c - activations: the single-input ones on the unary engine (ops/unary.c: Relu,
 * LeakyRelu, Elu, Selu, Celu, Sigmoid, HardSigmoid, HardSwish, Tanh, Gelu, Softplus, Softsign,
 * Mish, ThresholdedRelu, Shrink) and PRelu (slope broadcast to X) and Clip (bounds as attributes
 * before opset 11, optional scalar inputs since). The single-input ones and Clip accept oneDNN
 * blocked layouts (see ops/unary.h). Differentiable inputs: X; PRelu's slope (PReluGrad below);
 * not Clip's bounds. Backward kernels of the others: ops/activation_grad.c. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/broadcast.h"
#include "ops/unary.h"

OTL_UNARY_OP(Relu, "Relu", "", 6, 22, OTL_U_RELU, OTL_UG_RULE)
OTL_UNARY_OP(LeakyRelu, "LeakyRelu", "", 6, 22, OTL_U_LEAKY_RELU, OTL_UG_RULE)
OTL_UNARY_OP(Elu, "Elu", "", 6, 22, OTL_U_ELU, OTL_UG_RULE)
OTL_UNARY_OP(Selu, "Selu", "", 6, 22, OTL_U_SELU, OTL_UG_RULE)
OTL_UNARY_OP(Celu, "Celu", "", 12, 22, OTL_U_CELU, OTL_UG_RULE)
OTL_UNARY_OP(Sigmoid, "Sigmoid", "", 6, 22, OTL_U_SIGMOID, OTL_UG_RULE)
OTL_UNARY_OP(HardSigmoid, "HardSigmoid", "", 6, 22, OTL_U_HARD_SIGMOID, OTL_UG_RULE)
OTL_UNARY_OP(HardSwish, "HardSwish", "", 14, 22, OTL_U_HARD_SWISH, OTL_UG_RULE)
OTL_UNARY_OP(Tanh, "Tanh", "", 6, 22, OTL_U_TANH, OTL_UG_RULE)
OTL_UNARY_OP(Gelu, "Gelu", "", 20, 22, OTL_U_GELU, OTL_UG_RULE)
OTL_UNARY_OP(GeluMs, "Gelu", "com.microsoft", 1, 1, OTL_U_GELU, OTL_UG_RULE)
OTL_UNARY_OP(Softplus, "Softplus", "", 1, 22, OTL_U_SOFTPLUS, OTL_UG_RULE)
OTL_UNARY_OP(Softsign, "Softsign", "", 1, 22, OTL_U_SOFTSIGN, OTL_UG_RULE)
OTL_UNARY_OP(Mish, "Mish", "", 18, 22, OTL_U_MISH, OTL_UG_RULE)
OTL_UNARY_OP(ThresholdedRelu, "ThresholdedRelu", "", 10, 22, OTL_U_THRESHOLDED_RELU, OTL_UG_RULE)
OTL_UNARY_OP(Shrink, "Shrink", "", 9, 22, OTL_U_SHRINK, OTL_UG_RULE)

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

/* Broadcast of the slope to X (unidirectional); legacy: PRelu-6's per-channel 1-D slope. */
static otl_status prelu_bcast(otl_kctx *k, const otl_rt *x, const otl_rt *sl, int legacy, otl_bcast *b)
{
    int ranks[2] = {x->rank, sl->rank};
    int64_t cdims[OTL_MAX_RANK];
    const int64_t *dims[2] = {x->dims, sl->dims};
    const char *names[2] = {x->name, sl->name};
    if (legacy && sl->rank == 1 && x->rank >= 2 && sl->dims[0] != 1 && sl->dims[0] == x->dims[1]) {
        /* PRelu-6: a 1-D slope of C values is per channel (axis 1) */
        cdims[0] = sl->dims[0];
        for (int d = 1; d < x->rank - 1; d++)
            cdims[d] = 1;
        ranks[1] = x->rank - 1;
        dims[1] = cdims;
    }
    otl_status st = otl_bcast_init_dims(k, b, 2, ranks, dims, names);
    if (st)
        return st;
    int ok = b->rank == x->rank;
    for (int d = 0; ok && d < x->rank; d++)
        ok = b->dims[d] == x->dims[d];
    if (!ok)
        return otl_kfail(k, OTL_ERR_INPUT, "slope '%s' (rank %d) does not broadcast to X's shape (unidirectional)",
                         sl->name, sl->rank);
    return OTL_OK;
}

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
    if ((st = prelu_bcast(k, x, sl, k->opset < 7, &s->b)))
        return st;
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

/* dX = dY where x > 0, slope * dY elsewhere; dSlope = sum of x * dY where x <= 0, reduced over
 * the axes the slope was broadcast along: onnx_tl.PReluGrad(dY, X, slope) -> (dX, dSlope). */
static otl_status prelu_grad(otl_gctx *c)
{
    const otl_node *n = c->node;
    const char *in[3] = {c->dy[0], n->inputs[0], n->inputs[1]};
    const char *out[2] = {c->need[0] ? otl_gname(c, n->inputs[0]) : "", c->need[1] ? otl_gname(c, n->inputs[1]) : ""};
    otl_node *g = otl_gemit(c, OTL_GRAD_DOMAIN, "PReluGrad", 3, in, 2, out);
    otl_status st = g && c->opset < 7 ? otl_gattr_int(c, g, "channel_slope", 1) : OTL_OK;
    for (int i = 0; i < 2; i++)
        if (c->need[i])
            otl_grad_set(c, i, g ? out[i] : NULL);
    return st;
}

const otl_op otl_op_PRelu = {
    .op_type = "PRelu", .domain = "", .since = 6, .until = 22,
    .infer = prelu_infer, .forward = prelu_forward, .grad_inputs = 3, .grad = prelu_grad,
};

/* ---------------------------------------------------------------- PReluGrad */

static const int prelu_grad_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_BFLOAT16, 0};

static otl_status prelu_grad_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, prelu_grad_types)) || (st = otl_check_in(k, 1, prelu_grad_types)) ||
        (st = otl_check_in(k, 2, prelu_grad_types)))
        return st;
    const otl_rt *dy = k->in[0], *x = k->in[1], *sl = k->in[2];
    if (dy->dtype != x->dtype || sl->dtype != x->dtype)
        return otl_kfail(k, OTL_ERR_INPUT, "dY, X and slope differ in dtype");
    int same = dy->rank == x->rank;
    for (int d = 0; same && d < x->rank; d++)
        same = dy->dims[d] == x->dims[d];
    if (!same)
        return otl_kfail(k, OTL_ERR_INPUT, "gradient '%s' does not have X's shape", dy->name);
    int64_t legacy;
    if ((st = otl_attr_int(k, "channel_slope", 0, &legacy)))
        return st;
    prelu_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    if ((st = prelu_bcast(k, x, sl, legacy != 0, &s->b)))
        return st;
    if (otl_has_out(k, 0) && (st = otl_rt_like(k, k->out[0], x)))
        return st;
    if (otl_has_out(k, 1) && (st = otl_rt_like(k, k->out[1], sl)))
        return st;
    return OTL_OK;
}

typedef struct prelu_grad_ctx {
    const otl_bcast *b;
    int dt;
    const void *dy, *x, *slope;
    void *dx;
    void *dslope;              /* written directly when the slope has X's shape */
    double *acc;               /* else: sums over the slope's elements (shared, merged) */
    int64_t n_slope;
    double *part;              /* per chunk */
} prelu_grad_ctx;

static void prelu_grad_row(void *ctx, int64_t o, const int64_t *off, int64_t n)
{
    const prelu_grad_ctx *c = ctx;
    const int64_t ss = c->b->inner[1];
    if (c->dt == OTL_DTYPE_FLOAT) {
        const float *dy = (const float *)c->dy + o, *x = (const float *)c->x + o;
        const float *sl = (const float *)c->slope + off[1];
        if (c->dx) {
            float *dx = (float *)c->dx + o;
            for (int64_t i = 0; i < n; i++)
                dx[i] = x[i] > 0 ? dy[i] : sl[i * ss] * dy[i];
        }
        if (c->part) {
            double *p = c->part + off[1];
            for (int64_t i = 0; i < n; i++)
                p[i * ss] += x[i] > 0 ? 0.0 : (double)x[i] * dy[i];
        } else if (c->dslope) {
            float *ds = (float *)c->dslope + off[1];
            for (int64_t i = 0; i < n; i++)
                ds[i * ss] = x[i] > 0 ? 0.0f : x[i] * dy[i];
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        double g = otl_get_f(c->dy, c->dt, o + i), x = otl_get_f(c->x, c->dt, o + i);
        int64_t j = off[1] + i * ss;
        if (c->dx)
            otl_set_f(c->dx, c->dt, o + i, x > 0 ? g : otl_get_f(c->slope, c->dt, j) * g);
        if (c->part)
            c->part[j] += x > 0 ? 0.0 : x * g;
        else if (c->dslope)
            otl_set_f(c->dslope, c->dt, j, x > 0 ? 0.0 : x * g);
    }
}

static void prelu_grad_range(void *ctx, int64_t start, int64_t end)
{
    prelu_grad_ctx c = *(const prelu_grad_ctx *)ctx;
    if (c.acc) {
        c.part = calloc((size_t)c.n_slope, sizeof *c.part);
        if (!c.part) { /* no memory for a partial sum: this chunk adds into acc serially */
            #pragma omp critical(otl_prelu_grad)
            {
                c.part = c.acc;
                otl_bcast_rows(c.b, start, end, prelu_grad_row, &c);
            }
            return;
        }
    }
    otl_bcast_rows(c.b, start, end, prelu_grad_row, &c);
    if (c.part) {
        #pragma omp critical(otl_prelu_grad)
        for (int64_t j = 0; j < c.n_slope; j++)
            c.acc[j] += c.part[j];
        free(c.part);
    }
}

static otl_status prelu_grad_forward(otl_kctx *k)
{
    prelu_state *s = k->state;
    otl_rt *dx = otl_has_out(k, 0) ? k->out[0] : NULL, *ds = otl_has_out(k, 1) ? k->out[1] : NULL;
    const otl_rt *sl = k->in[2];
    prelu_grad_ctx c = {.b = &s->b, .dt = k->in[1]->dtype, .dy = k->in[0]->data, .x = k->in[1]->data,
                        .slope = sl->data, .dx = dx ? dx->data : NULL, .n_slope = sl->numel};
    if (ds && s->b.same[1]) {
        c.dslope = ds->data;
    } else if (ds) {
        if (!(c.acc = calloc((size_t)(sl->numel ? sl->numel : 1), sizeof *c.acc)))
            return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    }
    /* partial sums cost n_slope doubles per chunk: fewer chunks when the slope is large */
    int64_t grain = c.acc ? (sl->numel > 16384 ? s->b.numel : 16384 + 4 * sl->numel) : 32768;
    if (s->b.numel)
        otl_parallel_range(s->b.numel, grain, prelu_grad_range, &c);
    if (c.acc) {
        for (int64_t j = 0; j < sl->numel; j++)
            otl_set_f(ds->data, ds->dtype, j, c.acc[j]);
        free(c.acc);
    }
    return OTL_OK;
}

const otl_op otl_op_PReluGrad = {
    .op_type = "PReluGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = prelu_grad_infer, .forward = prelu_grad_forward,
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

/* Gradient: dX = dY where min < x < max (ops/activation_grad.c: ClipGrad on Y); min and max
 * are not differentiable. */
const otl_op otl_op_Clip = {
    .op_type = "Clip", .domain = "", .since = 6, .until = 22,
    .flags = OTL_OPF_ANY_LAYOUT,
    .infer = clip_infer, .prepare = clip_prepare, .forward = clip_forward, .release = clip_release,
    .grad_inputs = 1, .grad = otl_clip_grad,
};
