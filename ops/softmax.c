/* softmax.c - Softmax and LogSoftmax. Before opset 13 the input is coerced to 2-D at `axis`
 * (default 1) and normalized over the flattened trailing block; from 13 over the single `axis`
 * (default -1). X is viewed as (outer, c, inner) and normalized over c.
 * Differentiable input: input. Reverse mode: the private kernel
 *   onnx_tl.SoftmaxGrad(dY, Y) -> dX   attributes axis, legacy (1: pre-13 coercion), log
 *     Softmax:    dX = Y * (dY - sum(dY * Y))       LogSoftmax: dX = dY - exp(Y) * sum(dY)
 * (sums over the normalized axis), from the forward output only (X is not kept).
 * Kernels: float32 on oneDNN's softmax_v2 primitives (backward created with the
 * forward_training pd as hint) when oneDNN has an optimized one, which it has for inner == 1
 * (the last axis, attention); otherwise (a normalized axis with trailing dims, where oneDNN
 * only offers its reference kernel, ~20x slower) and for double, C loops that walk blocks of
 * the inner axis so that they vectorize. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/op.h"

#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

typedef struct softmax_state {
    int log;                    /* LogSoftmax */
    int64_t outer, c, inner;    /* X viewed as (outer, c, inner), normalized over c */
    dnnl_primitive_t prim;      /* NULL: C loops */
    dnnl_memory_t a, b, dx;     /* forward: X, Y; gradient: dY, Y, dX */
} softmax_state;

static const int sm_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, 0};

/* in[0] (X, or dY for the gradient) viewed as (outer, c, inner) around `axis`; legacy: pre-13. */
static otl_status softmax_view(otl_kctx *k, int log, int legacy, int64_t axis)
{
    const otl_rt *x = k->in[0];
    softmax_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->log = log;
    int a;
    otl_status st;
    if (x->rank == 0)
        return otl_kfail(k, OTL_ERR_INPUT, "input '%s' is a scalar; a softmax needs rank >= 1", x->name);
    if ((st = otl_axis(k, axis, x->rank, &a)))
        return st;
    s->outer = s->c = s->inner = 1;
    for (int i = 0; i < x->rank; i++) {
        if (i < a)
            s->outer *= x->dims[i];
        else if (i == a || legacy)
            s->c *= x->dims[i];
        else
            s->inner *= x->dims[i];
    }
    return otl_rt_like(k, k->out[0], x);
}

static otl_status softmax_infer_common(otl_kctx *k, int log)
{
    otl_status st = otl_check_in(k, 0, sm_types);
    if (st)
        return st;
    int64_t axis;
    int legacy = k->opset < 13;
    if ((st = otl_attr_int(k, "axis", legacy ? 1 : -1, &axis)))
        return st;
    return softmax_view(k, log, legacy, axis);
}

static otl_status softmax_infer(otl_kctx *k)
{
    return softmax_infer_common(k, 0);
}

static otl_status logsoftmax_infer(otl_kctx *k)
{
    return softmax_infer_common(k, 1);
}

static int pd_is_ref(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl &&
           strncmp(impl, "ref", 3) == 0;
}

/* oneDNN primitives for float32 (forward, or backward with the forward_training pd as hint);
 * none when oneDNN would run its reference kernel. */
static otl_status softmax_dnnl(otl_kctx *k, int backward)
{
    softmax_state *s = k->state;
    if (k->in[0]->dtype != OTL_DTYPE_FLOAT || s->prim || k->in[0]->numel == 0 || s->inner > 1)
        return OTL_OK;
    dnnl_dims_t dims = {s->outer, s->c, s->inner};
    dnnl_memory_desc_t md;
    dnnl_softmax_v2_desc_t fd, bd;
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    dnnl_alg_kind_t alg = s->log ? dnnl_softmax_log : dnnl_softmax_accurate;
    otl_status st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&md, 3, dims, dnnl_f32, dnnl_abc), "softmax memory descriptor");
    if (!st)
        st = otl_dnnl_check(k, dnnl_softmax_v2_forward_desc_init(&fd, backward ? dnnl_forward_training : dnnl_forward_inference,
                                                                 alg, &md, &md, 1), "softmax");
    if (!st)
        st = otl_dnnl_check(k, otl_pd_create(&fpd, &fd, NULL, k->eng->eng, NULL), "softmax");
    if (!st && backward) {
        st = otl_dnnl_check(k, dnnl_softmax_v2_backward_desc_init(&bd, alg, &md, &md, &md, 1), "softmax backward");
        if (!st)
            st = otl_dnnl_check(k, otl_pd_create(&bpd, &bd, NULL, k->eng->eng, fpd), "softmax backward");
    }
    dnnl_primitive_desc_t pd = backward ? bpd : fpd;
    if (!st && !pd_is_ref(pd))
        st = otl_dnnl_primitive(k, pd, &s->prim, "softmax");
    if (bpd)
        dnnl_primitive_desc_destroy(bpd);
    if (fpd)
        dnnl_primitive_desc_destroy(fpd);
    if (!st && s->prim && ((st = otl_dnnl_memory(k, &md, NULL, &s->a)) || (st = otl_dnnl_memory(k, &md, NULL, &s->b))))
        return st;
    if (!st && s->prim && backward)
        st = otl_dnnl_memory(k, &md, NULL, &s->dx);
    return st;
}

static otl_status softmax_prepare(otl_kctx *k)
{
    return softmax_dnnl(k, 0);
}

/* ---------------------------------------------------------------- C loops */

/* The inner axis is walked in blocks of SM_BLK positions: each pass over c touches one
 * contiguous run per row, and the per-position loops vectorize. Sums in double. */
#define SM_BLK 64

#define SOFTMAX_FORWARD(NAME, T, EXP, LOG)                                                        \
    static void NAME(T *y, const T *x, int64_t outer, int64_t c, int64_t inner, int take_log)     \
    {                                                                                             \
        int64_t nblk = (inner + SM_BLK - 1) / SM_BLK;                                             \
        _Pragma("omp parallel for if (outer * c * inner > 32768)")                                \
        for (int64_t t = 0; t < outer * nblk; t++) {                                              \
            int64_t o = t / nblk, i0 = (t % nblk) * SM_BLK;                                       \
            int64_t n = inner - i0 < SM_BLK ? inner - i0 : SM_BLK;                                \
            const T *xo = x + o * c * inner + i0;                                                 \
            T *yo = y + o * c * inner + i0;                                                       \
            T mx[SM_BLK];                                                                         \
            double sum[SM_BLK];                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                     \
                mx[i] = -INFINITY;                                                                \
                sum[i] = 0;                                                                       \
            }                                                                                     \
            for (int64_t j = 0; j < c; j++)                                                       \
                for (int64_t i = 0; i < n; i++)                                                   \
                    mx[i] = xo[j * inner + i] > mx[i] ? xo[j * inner + i] : mx[i];                \
            for (int64_t j = 0; j < c; j++)                                                       \
                for (int64_t i = 0; i < n; i++) {                                                 \
                    T e = EXP(xo[j * inner + i] - mx[i]);                                         \
                    if (!take_log)                                                                \
                        yo[j * inner + i] = e;                                                    \
                    sum[i] += e;                                                                  \
                }                                                                                 \
            for (int64_t i = 0; i < n; i++)                                                       \
                sum[i] = take_log ? (double)mx[i] + log(sum[i]) : 1.0 / sum[i];                   \
            for (int64_t j = 0; j < c; j++)                                                       \
                for (int64_t i = 0; i < n; i++)                                                   \
                    yo[j * inner + i] = take_log ? (T)(xo[j * inner + i] - sum[i])                \
                                                 : (T)(yo[j * inner + i] * sum[i]);               \
        }                                                                                         \
    }

#define SOFTMAX_BACKWARD(NAME, T, EXP)                                                            \
    static void NAME(T *dx, const T *dy, const T *y, int64_t outer, int64_t c, int64_t inner,     \
                     int take_log)                                                                \
    {                                                                                             \
        int64_t nblk = (inner + SM_BLK - 1) / SM_BLK;                                             \
        _Pragma("omp parallel for if (outer * c * inner > 32768)")                                \
        for (int64_t t = 0; t < outer * nblk; t++) {                                              \
            int64_t o = t / nblk, i0 = (t % nblk) * SM_BLK, base = o * c * inner + i0;            \
            int64_t n = inner - i0 < SM_BLK ? inner - i0 : SM_BLK;                                \
            double sum[SM_BLK];                                                                   \
            for (int64_t i = 0; i < n; i++)                                                       \
                sum[i] = 0;                                                                       \
            for (int64_t j = 0; j < c; j++)                                                       \
                for (int64_t i = 0; i < n; i++) {                                                 \
                    int64_t e = base + j * inner + i;                                             \
                    sum[i] += take_log ? dy[e] : dy[e] * y[e];                                    \
                }                                                                                 \
            for (int64_t j = 0; j < c; j++)                                                       \
                for (int64_t i = 0; i < n; i++) {                                                 \
                    int64_t e = base + j * inner + i;                                             \
                    dx[e] = take_log ? (T)(dy[e] - EXP(y[e]) * sum[i]) : (T)(y[e] * (dy[e] - sum[i])); \
                }                                                                                 \
        }                                                                                         \
    }

SOFTMAX_FORWARD(softmax_forward_f32, float, expf, logf)
SOFTMAX_FORWARD(softmax_forward_f64, double, exp, log)
SOFTMAX_BACKWARD(softmax_backward_f32, float, expf)
SOFTMAX_BACKWARD(softmax_backward_f64, double, exp)

static otl_status softmax_forward(otl_kctx *k)
{
    softmax_state *s = k->state;
    if (k->in[0]->numel == 0)
        return OTL_OK;
    if (s->prim) {
        dnnl_memory_set_data_handle(s->a, k->in[0]->data);
        dnnl_memory_set_data_handle(s->b, k->out[0]->data);
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, s->a}, {DNNL_ARG_DST, s->b}};
        return otl_dnnl_run(k, s->prim, 2, args);
    }
    if (k->in[0]->dtype == OTL_DTYPE_DOUBLE)
        softmax_forward_f64(k->out[0]->data, k->in[0]->data, s->outer, s->c, s->inner, s->log);
    else
        softmax_forward_f32(k->out[0]->data, k->in[0]->data, s->outer, s->c, s->inner, s->log);
    return OTL_OK;
}

static void softmax_release(otl_kctx *k)
{
    softmax_state *s = k->state;
    if (s->prim)
        dnnl_primitive_destroy(s->prim);
    dnnl_memory_t mems[3] = {s->a, s->b, s->dx};
    for (int i = 0; i < 3; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
}

/* ---------------------------------------------------------------- reverse mode */

static otl_status softmax_grad_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, sm_types)) || (st = otl_check_in(k, 1, sm_types)))
        return st;
    const otl_rt *dy = k->in[0], *y = k->in[1];
    int same = dy->dtype == y->dtype && dy->rank == y->rank;
    for (int i = 0; same && i < y->rank; i++)
        same = dy->dims[i] == y->dims[i];
    if (!same)
        return otl_kfail(k, OTL_ERR_INPUT, "gradient '%s' and output '%s' differ in shape or dtype", dy->name, y->name);
    int64_t axis, legacy, log;
    if ((st = otl_attr_int(k, "axis", -1, &axis)) || (st = otl_attr_int(k, "legacy", 0, &legacy)) ||
        (st = otl_attr_int(k, "log", 0, &log)))
        return st;
    return softmax_view(k, log != 0, legacy != 0, axis);
}

static otl_status softmax_grad_prepare(otl_kctx *k)
{
    return softmax_dnnl(k, 1);
}

static otl_status softmax_grad_forward(otl_kctx *k)
{
    softmax_state *s = k->state;
    if (k->in[0]->numel == 0)
        return OTL_OK;
    if (s->prim) {
        dnnl_memory_set_data_handle(s->a, k->in[0]->data);
        dnnl_memory_set_data_handle(s->b, k->in[1]->data);
        dnnl_memory_set_data_handle(s->dx, k->out[0]->data);
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, s->a}, {DNNL_ARG_DST, s->b}, {DNNL_ARG_DIFF_SRC, s->dx}};
        return otl_dnnl_run(k, s->prim, 3, args);
    }
    if (k->in[0]->dtype == OTL_DTYPE_DOUBLE)
        softmax_backward_f64(k->out[0]->data, k->in[0]->data, k->in[1]->data, s->outer, s->c, s->inner, s->log);
    else
        softmax_backward_f32(k->out[0]->data, k->in[0]->data, k->in[1]->data, s->outer, s->c, s->inner, s->log);
    return OTL_OK;
}

/* dX = SoftmaxGrad(dY, Y) with the forward's axis (its opset's default made explicit). */
static otl_status softmax_grad(otl_gctx *c)
{
    if (!c->need[0])
        return OTL_OK;
    const otl_node *n = c->node;
    if (!c->dy[0])
        return otl_error_set(c->err, OTL_ERR_INTERNAL, "%s: node '%s': no output gradient", c->file, n->name);
    int legacy = c->opset < 13;
    const otl_attr *a = otl_node_attr(n, "axis");
    int64_t axis = a && a->type == OTL_ATTR_INT ? a->i : legacy ? 1 : -1;
    const char *in[2] = {c->dy[0], n->outputs[0]};
    otl_node *g;
    const char *dx = otl_gemit1(c, OTL_GRAD_DOMAIN, "SoftmaxGrad", 2, in, &g);
    otl_status st = OTL_OK;
    if (g && !(st = otl_gattr_int(c, g, "axis", axis)) && !(st = otl_gattr_int(c, g, "legacy", legacy)))
        st = otl_gattr_int(c, g, "log", strcmp(n->op_type, "LogSoftmax") == 0);
    otl_grad_set(c, 0, dx);
    return st;
}

const otl_op otl_op_Softmax = {
    .op_type = "Softmax", .domain = "", .since = 1, .until = 22,
    .infer = softmax_infer, .prepare = softmax_prepare, .forward = softmax_forward, .release = softmax_release,
    .grad_inputs = 1, .grad = softmax_grad,
};

const otl_op otl_op_LogSoftmax = {
    .op_type = "LogSoftmax", .domain = "", .since = 1, .until = 22,
    .infer = logsoftmax_infer, .prepare = softmax_prepare, .forward = softmax_forward, .release = softmax_release,
    .grad_inputs = 1, .grad = softmax_grad,
};

const otl_op otl_op_SoftmaxGrad = {
    .op_type = "SoftmaxGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = softmax_grad_infer, .prepare = softmax_grad_prepare, .forward = softmax_grad_forward,
    .release = softmax_release,
};
